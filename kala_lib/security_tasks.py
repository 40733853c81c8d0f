"""A security-conscious coding data set, written by the project (part of the 30% coding share).

Each task is a coding request whose reference answer uses the safe pattern (parameterised SQL,
``subprocess`` without a shell, ``secrets`` for tokens, path-traversal checks, no ``eval`` on
input, ``yaml.safe_load``, JSON instead of pickle, salted slow password hashes, constant-time
comparison, escaping, private temp files and permissions, validation, redaction, URL allow-lists),
names the insecure pattern it avoids, and carries tests. ``run_task_tests`` executes a solution
against them; the test suite runs every reference answer, so none of them is untested.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class SecurityTask:
    task_id: str
    family: str
    cwe: str
    prompt: str
    reference_solution: str
    tests: str
    insecure_pattern: str
    forbidden: str  # regex the reference (and a good answer) must not match

    def as_record(self) -> dict:
        return {
            "task_id": self.task_id,
            "family": self.family,
            "cwe": self.cwe,
            "prompt": self.prompt,
            "reference_solution": self.reference_solution,
            "tests": self.tests,
            "insecure_pattern": self.insecure_pattern,
            "forbidden_regex": self.forbidden,
        }


def _d(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


# --- families: each yields (name, prompt, solution, tests) for its parameter rows -------------------

SQL_LOOKUPS = [
    ("users", "username", "email", "get_user_email"),
    ("products", "sku", "price", "get_product_price"),
    ("orders", "order_id", "status", "get_order_status"),
    ("books", "isbn", "title", "get_book_title"),
    ("employees", "badge", "department", "get_employee_department"),
    ("customers", "phone", "name", "get_customer_name"),
    ("tickets", "ticket_id", "priority", "get_ticket_priority"),
    ("devices", "serial", "owner", "get_device_owner"),
]


def _sql_lookup():
    for table, key, col, func in SQL_LOOKUPS:
        prompt = (
            f"Write a Python function `{func}(conn, {key})` that takes an open sqlite3 connection and returns the "
            f"`{col}` of the row in table `{table}` whose `{key}` equals the given value, or None if there is no "
            f"such row. The value comes straight from user input."
        )
        solution = _d(f'''
            def {func}(conn, {key}):
                """Look up {col} by {key}; the value is passed as a query parameter, never formatted in."""
                row = conn.execute("SELECT {col} FROM {table} WHERE {key} = ?", ({key},)).fetchone()
                return row[0] if row else None
        ''')
        tests = _d(f'''
            import sqlite3
            conn = sqlite3.connect(":memory:")
            conn.execute("CREATE TABLE {table} ({key} TEXT, {col} TEXT)")
            conn.execute("INSERT INTO {table} VALUES ('a1', 'x'), ('b2', 'y')")
            assert {func}(conn, "a1") == "x"
            assert {func}(conn, "zz") is None
            assert {func}(conn, "' OR '1'='1") is None
            assert {func}(conn, "a1'; DROP TABLE {table}; --") is None
            assert conn.execute("SELECT count(*) FROM {table}").fetchone()[0] == 2
        ''')
        yield func, prompt, solution, tests


SQL_INSERTS = [
    ("comments", "author", "body", "add_comment"),
    ("contacts", "name", "phone", "add_contact"),
    ("reviews", "reviewer", "text", "add_review"),
    ("notes", "title", "content", "add_note"),
    ("messages", "sender", "message", "add_message"),
    ("addresses", "street", "city", "add_address"),
    ("tags", "label", "color", "add_tag"),
    ("events", "event_name", "location", "add_event"),
]


def _sql_insert():
    for table, a, b, func in SQL_INSERTS:
        prompt = (
            f"Write `{func}(conn, {a}, {b})` that inserts a row into the sqlite3 table `{table}` "
            f"(columns `{a}`, `{b}`) and commits. Both values are user-supplied text and may contain quotes."
        )
        solution = _d(f'''
            def {func}(conn, {a}, {b}):
                """Insert with placeholders so quotes in user text cannot change the statement."""
                conn.execute("INSERT INTO {table} ({a}, {b}) VALUES (?, ?)", ({a}, {b}))
                conn.commit()
        ''')
        tests = _d(f'''
            import sqlite3
            conn = sqlite3.connect(":memory:")
            conn.execute("CREATE TABLE {table} ({a} TEXT, {b} TEXT)")
            {func}(conn, "O'Brien", "it's fine")
            {func}(conn, "x'); DROP TABLE {table}; --", "y")
            rows = conn.execute("SELECT {a}, {b} FROM {table} ORDER BY rowid").fetchall()
            assert rows == [("O'Brien", "it's fine"), ("x'); DROP TABLE {table}; --", "y")]
        ''')
        yield func, prompt, solution, tests


SUBPROCESS_TASKS = [
    ("count_lines", "the number of lines in the file, using the `wc -l` command", '["wc", "-l", path]',
     "int(result.stdout.split()[0])", "3"),
    ("count_words", "the number of words in the file, using the `wc -w` command", '["wc", "-w", path]',
     "int(result.stdout.split()[0])", "6"),
    ("first_line", "the first line of the file without its newline, using `head -n 1`", '["head", "-n", "1", path]',
     "result.stdout.rstrip(\"\\n\")", "'alpha beta'"),
    ("sorted_lines", "the file's lines sorted, using the `sort` command", '["sort", path]',
     "result.stdout.splitlines()", "['alpha beta', 'delta', 'gamma epsilon zeta']"),
    ("file_sha256", "the file's SHA-256 hex digest, using the `sha256sum` command", '["sha256sum", path]',
     "result.stdout.split()[0]", "__import__('hashlib').sha256(open(path, 'rb').read()).hexdigest()"),
    ("byte_size", "the file's size in bytes, using `wc -c`", '["wc", "-c", path]',
     "int(result.stdout.split()[0])", "os.path.getsize(path)"),
    ("last_line", "the last line of the file without its newline, using `tail -n 1`", '["tail", "-n", "1", path]',
     "result.stdout.rstrip(\"\\n\")", "'delta'"),
    ("unique_lines", "the number of distinct lines, using `sort -u`", '["sort", "-u", path]',
     "len(result.stdout.splitlines())", "3"),
]


def _subprocess():
    for func, what, argv, parse, expected in SUBPROCESS_TASKS:
        prompt = (
            f"Write `{func}(path)` that returns {what}. The path comes from a user upload, so its name can "
            f"contain spaces, quotes or shell metacharacters."
        )
        solution = _d(f'''
            import subprocess

            def {func}(path):
                """Run the command with an argument list (no shell), so the file name is never parsed as shell code."""
                result = subprocess.run({argv}, capture_output=True, text=True, check=True)
                return {parse}
        ''')
        tests = _d(f'''
            import os
            path = "notes; touch pwned.txt"
            with open(path, "w") as handle:
                handle.write("alpha beta\\ngamma epsilon zeta\\ndelta\\n")
            assert {func}(path) == {expected}
            assert not os.path.exists("pwned.txt")
            weird = "it's $(touch pwned2.txt).txt"
            with open(weird, "w") as handle:
                handle.write("one\\n")
            {func}(weird)
            assert not os.path.exists("pwned2.txt")
        ''')
        yield func, prompt, solution, tests


TOKEN_TASKS = [
    ("make_reset_token", "a password-reset token for a URL", "secrets.token_urlsafe(32)",
     "len(t) >= 40 and re.fullmatch(r'[A-Za-z0-9_-]+', t)"),
    ("make_api_key", "a 64-character hexadecimal API key", "secrets.token_hex(32)",
     "re.fullmatch(r'[0-9a-f]{64}', t)"),
    ("make_session_id", "a session identifier for a cookie", "secrets.token_urlsafe(24)",
     "len(t) >= 30 and re.fullmatch(r'[A-Za-z0-9_-]+', t)"),
    ("make_otp", "a six-digit one-time login code", "''.join(secrets.choice('0123456789') for _ in range(6))",
     "re.fullmatch(r'[0-9]{6}', t)"),
    ("make_password", "a random 16-character password from letters, digits and punctuation",
     "''.join(secrets.choice(string.ascii_letters + string.digits + string.punctuation) for _ in range(16))",
     "len(t) == 16 and all(c in string.ascii_letters + string.digits + string.punctuation for c in t)"),
    ("make_csrf_token", "a CSRF token for a form", "secrets.token_urlsafe(32)",
     "len(t) >= 40"),
    ("make_invite_code", "an invite code of 16 upper-case hex characters", "secrets.token_hex(8).upper()",
     "re.fullmatch(r'[0-9A-F]{16}', t)"),
    ("make_file_nonce", "a random 16-byte nonce as bytes", "secrets.token_bytes(16)",
     "isinstance(t, bytes) and len(t) == 16"),
]


def _tokens():
    for func, what, expr, check in TOKEN_TASKS:
        prompt = f"Write `{func}()` that returns {what}. It must be unpredictable to an attacker."
        solution = _d(f'''
            import secrets
            import string

            def {func}():
                """Security tokens come from the secrets module (a CSPRNG), never from random."""
                return {expr}
        ''')
        tests = _d(f'''
            import re, string
            tokens = [{func}() for _ in range(200)]
            for t in tokens:
                assert {check}, t
            assert len(set(tokens)) == len(tokens)
        ''')
        yield func, prompt, solution, tests


PATH_TASKS = ["read_upload", "read_template", "read_static_file", "read_report", "read_avatar_text", "read_log_file",
              "read_attachment", "read_config_fragment"]


def _paths():
    for func in PATH_TASKS:
        prompt = (
            f"Write `{func}(base_dir, filename)` that returns the text of `filename` inside `base_dir`. "
            f"`filename` comes from a web request; reading anything outside `base_dir` must raise ValueError."
        )
        solution = _d(f'''
            from pathlib import Path

            def {func}(base_dir, filename):
                """Resolve the path and refuse anything that escapes the base directory (.., absolute paths, symlinks)."""
                base = Path(base_dir).resolve()
                target = (base / filename).resolve()
                if not target.is_relative_to(base):
                    raise ValueError(f"{{filename!r}} is outside {{base}}")
                return target.read_text()
        ''')
        tests = _d(f'''
            import os
            os.makedirs("base/sub", exist_ok=True)
            open("base/ok.txt", "w").write("fine")
            open("base/sub/deep.txt", "w").write("deep")
            open("secret.txt", "w").write("top secret")
            os.symlink(os.path.abspath("secret.txt"), "base/link.txt")
            assert {func}("base", "ok.txt") == "fine"
            assert {func}("base", "sub/deep.txt") == "deep"
            for bad in ("../secret.txt", "sub/../../secret.txt", os.path.abspath("secret.txt"), "link.txt"):
                try:
                    {func}("base", bad)
                except ValueError:
                    pass
                else:
                    raise AssertionError(f"read outside base: {{bad}}")
        ''')
        yield func, prompt, solution, tests


EVAL_TASKS = [
    ("parse_list", "a Python list literal such as \"[1, 2, 'a']\"", "list", "[1, 2, 'a']", [1, 2, "a"]),
    ("parse_dict", "a Python dict literal such as \"{'a': 1}\"", "dict", "{'a': 1}", {"a": 1}),
    ("parse_tuple", "a Python tuple literal such as \"(1, 2)\"", "tuple", "(1, 2)", (1, 2)),
    ("parse_number_list", "a list of numbers such as \"[1.5, 2, -3]\"", "list", "[1.5, 2, -3]", [1.5, 2, -3]),
    ("parse_settings", "a dict of settings such as \"{'debug': True, 'level': 3}\"", "dict",
     "{'debug': True, 'level': 3}", {"debug": True, "level": 3}),
]


def _no_eval():
    for func, what, kind, sample, expected in EVAL_TASKS:
        prompt = (
            f"Write `{func}(text)` that converts user-supplied text containing {what} into the Python value, "
            f"raising ValueError if it is not a {kind}."
        )
        solution = _d(f'''
            import ast

            def {func}(text):
                """literal_eval only accepts literals: input can't run code the way eval() would let it."""
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError) as exc:
                    raise ValueError(f"not a literal: {{exc}}") from None
                if not isinstance(value, {kind}):
                    raise ValueError("expected a {kind}")
                return value
        ''')
        tests = _d(f'''
            assert {func}({sample!r}) == {expected!r}
            for bad in ("__import__('os').system('touch pwned.txt')", "open('x', 'w')", "[1, 2", "42"):
                try:
                    {func}(bad)
                except ValueError:
                    pass
                else:
                    raise AssertionError(bad)
            import os
            assert not os.path.exists("pwned.txt")
        ''')
        yield func, prompt, solution, tests
    prompt = (
        "Write `safe_calculate(expression)` for a calculator web app: evaluate + - * / ** and parentheses on "
        "numbers typed by the user and raise ValueError for anything else."
    )
    solution = _d('''
        import ast
        import operator

        _OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}

        def safe_calculate(expression):
            """Walk the parsed expression and allow only numbers and arithmetic operators (no eval)."""
            def walk(node):
                if isinstance(node, ast.Expression):
                    return walk(node.body)
                if isinstance(node, ast.Constant) and type(node.value) in (int, float):
                    return node.value
                if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
                    if isinstance(node.op, ast.Pow) and abs(walk(node.right)) > 100:
                        raise ValueError("exponent too large")
                    return _OPS[type(node.op)](walk(node.left), walk(node.right))
                if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
                    return _OPS[type(node.op)](walk(node.operand))
                raise ValueError(f"unsupported expression: {ast.dump(node)[:40]}")
            try:
                return walk(ast.parse(expression, mode="eval"))
            except SyntaxError as exc:
                raise ValueError(str(exc)) from None
    ''')
    tests = _d('''
        assert safe_calculate("2 + 3 * 4") == 14
        assert safe_calculate("(1 + 1) ** 3 / 4") == 2.0
        assert safe_calculate("-5 + 2") == -3
        for bad in ("__import__('os').getcwd()", "2 ** 10000000", "abs(-1)", "x + 1", "1 +"):
            try:
                safe_calculate(bad)
            except ValueError:
                pass
            else:
                raise AssertionError(bad)
    ''')
    yield "safe_calculate", prompt, solution, tests


YAML_TASKS = ["load_config", "load_users", "load_rules", "load_inventory", "load_pipeline_spec", "load_manifest"]


def _yaml():
    for func in YAML_TASKS:
        prompt = f"Write `{func}(text)` that parses a YAML document uploaded by a user and returns the data."
        solution = _d(f'''
            import yaml

            def {func}(text):
                """safe_load builds only plain data; yaml.load with the full loader can construct arbitrary objects."""
                return yaml.safe_load(text)
        ''')
        tests = _d(f'''
            import os, yaml
            assert {func}("a: 1\\nb: [x, y]\\n") == {{"a": 1, "b": ["x", "y"]}}
            payload = "!!python/object/apply:os.system ['touch pwned.txt']"
            try:
                {func}(payload)
            except yaml.YAMLError:
                pass
            else:
                raise AssertionError("unsafe tag accepted")
            assert not os.path.exists("pwned.txt")
        ''')
        yield func, prompt, solution, tests


PICKLE_TASKS = [("session", "a user's session data"), ("cart", "a shopping cart"), ("preferences", "user preferences"),
                ("cache_entry", "a cache entry received from another service"), ("settings", "application settings")]


def _serialization():
    for name, what in PICKLE_TASKS:
        prompt = (
            f"Write `save_{name}(path, data)` and `load_{name}(path)` to store and load {what} (dicts of strings, "
            f"numbers, lists) in a file that users can upload back to the server."
        )
        solution = _d(f'''
            import json

            def save_{name}(path, data):
                """JSON holds plain data only; unpickling an uploaded file would run code chosen by its author."""
                with open(path, "w", encoding="utf-8") as handle:
                    json.dump(data, handle)

            def load_{name}(path):
                with open(path, encoding="utf-8") as handle:
                    return json.load(handle)
        ''')
        tests = _d(f'''
            import os, pickle
            data = {{"user": "ana", "items": [1, 2.5, "x"], "nested": {{"ok": True}}}}
            save_{name}("store.json", data)
            assert load_{name}("store.json") == data
            class Evil:
                def __reduce__(self):
                    return (os.system, ("touch pwned.txt",))
            with open("evil.bin", "wb") as handle:
                pickle.dump(Evil(), handle)
            try:
                load_{name}("evil.bin")
            except (ValueError, UnicodeDecodeError):
                pass
            else:
                raise AssertionError("loaded a pickle")
            assert not os.path.exists("pwned.txt")
        ''')
        yield f"save_{name}", prompt, solution, tests


HASH_TASKS = [("password", "pbkdf2"), ("pin", "pbkdf2"), ("passphrase", "pbkdf2"),
              ("recovery_code", "scrypt"), ("admin_password", "scrypt"), ("vault_key", "scrypt")]


def _password_hashing():
    for name, algo in HASH_TASKS:
        prompt = (
            f"Write `hash_{name}({name})` returning a string to store in the database, and "
            f"`verify_{name}({name}, stored)` returning True only for the right {name.replace('_', ' ')}."
        )
        derive = (
            "hashlib.pbkdf2_hmac('sha256', secret.encode(), salt, 200_000)"
            if algo == "pbkdf2"
            else "hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1)"
        )
        solution = _d(f'''
            import hashlib
            import hmac
            import os

            def _derive(secret, salt):
                return {derive}

            def hash_{name}({name}):
                """A per-user random salt and a slow key-derivation function; never a bare MD5/SHA hash."""
                salt = os.urandom(16)
                return salt.hex() + "$" + _derive({name}, salt).hex()

            def verify_{name}({name}, stored):
                salt_hex, digest_hex = stored.split("$", 1)
                candidate = _derive({name}, bytes.fromhex(salt_hex)).hex()
                return hmac.compare_digest(candidate, digest_hex)
        ''')
        tests = _d(f'''
            stored = hash_{name}("correct horse")
            assert "correct horse" not in stored
            assert verify_{name}("correct horse", stored)
            assert not verify_{name}("wrong horse", stored)
            assert hash_{name}("correct horse") != stored  # salted
        ''')
        yield f"hash_{name}", prompt, solution, tests


HMAC_TASKS = ["webhook", "cookie", "download_link", "api_request", "export_file", "session_blob"]


def _signatures():
    for name in HMAC_TASKS:
        prompt = (
            f"Write `sign_{name}(key, message)` returning a hex signature for a {name.replace('_', ' ')} "
            f"payload (bytes), and `verify_{name}(key, message, signature)` that checks a signature sent by a client."
        )
        solution = _d(f'''
            import hashlib
            import hmac

            def sign_{name}(key, message):
                return hmac.new(key, message, hashlib.sha256).hexdigest()

            def verify_{name}(key, message, signature):
                """compare_digest takes the same time wherever the strings differ (no timing side channel)."""
                return hmac.compare_digest(sign_{name}(key, message), signature)
        ''')
        tests = _d(f'''
            key = b"k" * 32
            sig = sign_{name}(key, b"payload")
            assert len(sig) == 64
            assert verify_{name}(key, b"payload", sig)
            assert not verify_{name}(key, b"payload!", sig)
            assert not verify_{name}(b"x" * 32, b"payload", sig)
            assert not verify_{name}(key, b"payload", "0" * 64)
        ''')
        yield f"sign_{name}", prompt, solution, tests


HTML_TASKS = [("render_greeting", "name", "<p>Hello, {}!</p>"), ("render_comment", "comment", "<div class=\"comment\">{}</div>"),
              ("render_title", "title", "<h1>{}</h1>"), ("render_search_query", "query", "<p>Results for {}</p>"),
              ("render_badge", "username", "<span class=\"badge\">{}</span>"), ("render_error", "message", "<p class=\"error\">{}</p>")]


def _html():
    for func, arg, template in HTML_TASKS:
        prompt = f"Write `{func}({arg})` that returns the HTML `{template.format('...')}` with the user's {arg} inside."
        solution = _d(f'''
            import html

            def {func}({arg}):
                """Escape user text so <script> and quotes are shown, not executed."""
                return {template!r}.format(html.escape({arg}, quote=True))
        ''')
        tests = _d(f'''
            out = {func}("<script>alert('x')</script>")
            assert "<script>" not in out and "&lt;script&gt;" in out
            assert {func}("Ana") == {template.format("Ana")!r}
            assert "&quot;" in {func}('" onmouseover="x')
        ''')
        yield func, prompt, solution, tests


TEMP_TASKS = ["write_temp_report", "write_temp_export", "write_temp_upload", "write_temp_invoice", "write_temp_backup",
              "write_temp_manifest"]


def _tempfiles():
    for func in TEMP_TASKS:
        prompt = (
            f"Write `{func}(text)` that writes text to a new temporary file on a shared multi-user server and "
            f"returns its path. Other users must not be able to predict or read it."
        )
        solution = _d(f'''
            import os
            import tempfile

            def {func}(text):
                """mkstemp creates a new file with an unpredictable name and mode 0600 (no /tmp/report.txt races)."""
                fd, path = tempfile.mkstemp(suffix=".txt")
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                return path
        ''')
        tests = _d(f'''
            import os, stat
            paths = [{func}("data %d" % i) for i in range(5)]
            assert len(set(paths)) == 5
            for i, path in enumerate(paths):
                assert open(path).read() == "data %d" % i
                assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
                os.unlink(path)
        ''')
        yield func, prompt, solution, tests


PERMISSION_TASKS = ["save_api_key", "save_private_key", "save_db_password", "save_oauth_token", "save_ssh_secret"]


def _permissions():
    for func in PERMISSION_TASKS:
        prompt = f"Write `{func}(path, secret)` that writes a secret string to `path` so only the owner can read it."
        solution = _d(f'''
            import os

            def {func}(path, secret):
                """Create the file with mode 0600 from the start; chmod after writing leaves a readable window."""
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(secret)
        ''')
        tests = _d(f'''
            import os, stat
            old = os.umask(0)
            try:
                {func}("secret.txt", "s3cr3t")
            finally:
                os.umask(old)
            assert open("secret.txt").read() == "s3cr3t"
            assert stat.S_IMODE(os.stat("secret.txt").st_mode) == 0o600
        ''')
        yield func, prompt, solution, tests


VALIDATION_TASKS = [
    ("parse_port", "a TCP port number (1-65535)", "int", 1, 65535, "8080", 8080, ["0", "70000", "80; rm -rf /", "8e3", ""]),
    ("parse_age", "an age in years (0-150)", "int", 0, 150, "42", 42, ["-1", "151", "4.2", "abc", ""]),
    ("parse_quantity", "an order quantity (1-1000)", "int", 1, 1000, "3", 3, ["0", "1001", "1e3", "3 OR 1=1", ""]),
    ("parse_percentage", "a percentage (0-100, decimals allowed)", "float", 0, 100, "12.5", 12.5, ["-0.1", "100.5", "nan", "inf", ""]),
    ("parse_page_number", "a page number (1-10000)", "int", 1, 10000, "7", 7, ["0", "10001", "-3", "1.5", ""]),
]


def _validation():
    for func, what, kind, low, high, good, value, bad in VALIDATION_TASKS:
        prompt = f"Write `{func}(text)` that parses {what} from a form field and raises ValueError for anything else."
        convert = "int(text, 10)" if kind == "int" else "float(text)"
        finite = (
            ""
            if kind == "int"
            else "    if value != value or value in (float('inf'), float('-inf')):\n"
            "        raise ValueError('not a finite number')\n"
        )
        solution = (
            f"def {func}(text):\n"
            '    """Parse strictly and check the range: client-side validation proves nothing."""\n'
            "    text = text.strip()\n"
            "    try:\n"
            f"        value = {convert}\n"
            "    except ValueError:\n"
            "        raise ValueError(f'not a number: {text!r}') from None\n"
            f"{finite}"
            f"    if not {low} <= value <= {high}:\n"
            f"        raise ValueError(f'out of range {low}-{high}: {{value}}')\n"
            "    return value\n"
        )
        tests = _d(f'''
            assert {func}({good!r}) == {value!r}
            for bad in {bad!r}:
                try:
                    {func}(bad)
                except ValueError:
                    pass
                else:
                    raise AssertionError(bad)
        ''')
        yield func, prompt, solution, tests
    username = _d('''
        import re

        _USERNAME = re.compile(r"[a-z0-9_]{3,32}")

        def validate_username(name):
            """An allow-list pattern with fullmatch: rejects everything not explicitly allowed."""
            if not isinstance(name, str) or not _USERNAME.fullmatch(name):
                raise ValueError("usernames are 3-32 lower-case letters, digits or _")
            return name
    ''')
    tests = _d('''
        assert validate_username("ana_99") == "ana_99"
        for bad in ("ab", "Ana", "ana\\n", "a" * 33, "ana; drop", "../etc", None):
            try:
                validate_username(bad)
            except ValueError:
                pass
            else:
                raise AssertionError(bad)
    ''')
    yield "validate_username", (
        "Write `validate_username(name)` that accepts 3-32 characters of lower-case letters, digits and "
        "underscores and raises ValueError otherwise."
    ), username, tests


REDACTION_TASKS = ["redact_log_line", "redact_error_report", "redact_audit_entry", "redact_debug_output",
                   "redact_request_dump"]


def _redaction():
    for func in REDACTION_TASKS:
        prompt = (
            f"Write `{func}(text)` that masks secrets before text is logged: values of password=, token=, "
            f"api_key= and secret= (up to the next space or &), and Bearer tokens, become ***."
        )
        solution = _d(f'''
            import re

            _SECRET = re.compile(r"(?i)\\b(password|token|api_key|secret)=([^\\s&]+)")
            _BEARER = re.compile(r"(?i)\\bBearer\\s+[A-Za-z0-9._~+/=-]+")

            def {func}(text):
                """Mask secrets so logs, which many people can read, never hold credentials."""
                text = _SECRET.sub(lambda m: m.group(1) + "=***", text)
                return _BEARER.sub("Bearer ***", text)
        ''')
        tests = _d(f'''
            line = "login user=ana password=hunter2&token=abc123 Authorization: Bearer eyJhbGciOi.x.y"
            out = {func}(line)
            assert "hunter2" not in out and "abc123" not in out and "eyJhbGciOi" not in out
            assert "user=ana" in out and "password=***" in out and "Bearer ***" in out
            assert {func}("nothing secret here") == "nothing secret here"
        ''')
        yield func, prompt, solution, tests


URL_TASKS = ["is_allowed_webhook_url", "is_allowed_image_url", "is_allowed_redirect_url", "is_allowed_feed_url",
             "is_allowed_callback_url"]


def _urls():
    for func in URL_TASKS:
        prompt = (
            f"Write `{func}(url, allowed_hosts)` that returns True only for https URLs whose host is exactly one "
            f"of `allowed_hosts`; the server fetches these URLs, so tricks like user-info or look-alike hosts must fail."
        )
        solution = _d(f'''
            from urllib.parse import urlsplit

            def {func}(url, allowed_hosts):
                """Parse the URL and compare the exact host name: substring checks are easy to fool."""
                try:
                    parts = urlsplit(url)
                except ValueError:
                    return False
                return parts.scheme == "https" and parts.username is None and parts.hostname in set(allowed_hosts)
        ''')
        tests = _d(f'''
            hosts = ["api.example.com"]
            assert {func}("https://api.example.com/hook", hosts)
            for bad in ("http://api.example.com/", "https://api.example.com.evil.net/", "https://evil.net/?api.example.com",
                        "https://api.example.com@evil.net/", "https://user@api.example.com/", "file:///etc/passwd",
                        "https://evil-api.example.com/"):
                assert not {func}(bad, hosts), bad
        ''')
        yield func, prompt, solution, tests


FAMILIES = [
    ("sql_lookup", "CWE-89", _sql_lookup, "string-formatted SQL (f\"... WHERE col = '{value}'\"), open to SQL injection",
     r"execute\(\s*f[\"']|\.format\(|%\s*\("),
    ("sql_insert", "CWE-89", _sql_insert, "building INSERT statements by string concatenation", r"execute\(\s*f[\"']|\.format\(|\+\s*\w+\s*\+"),
    ("subprocess", "CWE-78", _subprocess, "shell=True or os.system with the file name in the command string",
     r"shell\s*=\s*True|os\.system|os\.popen"),
    ("tokens", "CWE-338", _tokens, "random.random()/random.choice for security tokens (predictable PRNG)", r"\brandom\.|import random"),
    ("path_traversal", "CWE-22", _paths, "open(base_dir + '/' + filename) without checking the resolved path", r"base_dir\s*\+"),
    ("no_eval", "CWE-95", _no_eval, "eval()/exec() on user input", r"\beval\(|\bexec\("),
    ("safe_yaml", "CWE-502", _yaml, "yaml.load with an unsafe loader", r"yaml\.load\(|unsafe_load|UnsafeLoader|FullLoader"),
    ("no_pickle", "CWE-502", _serialization, "pickle.load on files users can supply", r"pickle"),
    ("password_hashing", "CWE-916", _password_hashing, "unsalted md5/sha1 password hashes compared with ==",
     r"md5|sha1\(|==\s*digest_hex"),
    ("constant_time_compare", "CWE-208", _signatures, "comparing signatures with == (timing leak)", r"==\s*signature|signature\s*=="),
    ("html_escaping", "CWE-79", _html, "inserting user text into HTML unescaped", r"\.format\((?!html\.escape)\w+\)"),
    ("temp_files", "CWE-377", _tempfiles, "predictable names such as /tmp/report.txt or tempfile.mktemp()", r"/tmp/|mktemp\("),
    ("file_permissions", "CWE-732", _permissions, "writing secrets with default permissions, then chmod", r"chmod"),
    ("input_validation", "CWE-20", _validation, "trusting form input (eval/int without range checks)", r"\beval\("),
    ("log_redaction", "CWE-532", _redaction, "logging request lines with credentials in them", r"print\("),
    ("url_allowlist", "CWE-918", _urls, "substring checks like 'example.com' in url before fetching", r"\bin\s+url\b"),
]


def security_tasks() -> list[SecurityTask]:
    """All tasks, in a stable order with stable ids (sec_001 ...)."""
    tasks = []
    for family, cwe, build, insecure, forbidden in FAMILIES:
        for _name, prompt, solution, tests in build():
            tasks.append(
                SecurityTask(
                    task_id=f"sec_{len(tasks) + 1:03d}",
                    family=family,
                    cwe=cwe,
                    prompt=prompt,
                    reference_solution=solution,
                    tests=tests,
                    insecure_pattern=insecure,
                    forbidden=forbidden,
                )
            )
    return tasks


def run_task_tests(task: SecurityTask, solution: str | None = None, timeout: float = 30.0) -> tuple[bool, str]:
    """Run ``solution`` (default: the reference) and the task's tests in a fresh interpreter and a
    private temporary directory. Returns (passed, output)."""
    code = (solution if solution is not None else task.reference_solution) + "\n\n" + task.tests
    with tempfile.TemporaryDirectory(prefix="kala-sec-") as workdir:
        try:
            result = subprocess.run(
                [sys.executable, "-I", "-c", code],
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join(sys.path)},
            )
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout}s"
    return result.returncode == 0, (result.stdout + result.stderr)[-2000:]


def code_without_docstrings(code: str) -> str:
    """The code as ``ast.unparse`` sees it: no comments, no docstrings (they may name the bad pattern)."""
    import ast

    tree = ast.parse(code)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def violates_safe_pattern(task: SecurityTask, solution: str) -> bool:
    """True when the code (docstrings and comments aside) uses the insecure pattern the task avoids."""
    try:
        code = code_without_docstrings(solution)
    except SyntaxError:
        code = solution
    return re.search(task.forbidden, code) is not None
