"""Every setting the code reads is set by infra/main.bicep and by local.settings.json.example, and
every setting those two set is read by the code, or is a Functions-host setting listed below.

Reads are found in the source with `ast`, not by importing it: ``env.get("X")``, ``env["X"]``,
``os.environ.get("X")``, ``os.getenv("X")``, ``helper(env, "X", ...)`` (settings.py's _int), the
same with a module-level string constant instead of a literal, ``for _, name in NAMES.items():
env.get(name)`` over a module-level dict/list/tuple of names, and in function_app.py the ``%X%``
binding expressions and ``connection="X"`` names of its decorators.

A Functions connection named X may be given as X (a connection string, as locally with Azurite)
or as X__accountName, X__credential, X__clientId... (identity-based, as in Azure): both count as X.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "function_app.py", *sorted((ROOT / "importcore").rglob("*.py"))]
BICEP = ROOT / "infra" / "main.bicep"
LOCAL = ROOT / "local.settings.json.example"

# Set for the Functions host, never read by our code.
HOST_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME": "Core Tools / devhost pick the Python worker with it; Flex Consumption takes "
                                "functionAppConfig.runtime instead and rejects it as an app setting",
    "AzureWebJobsFeatureFlags": "EnableWorkerIndexing (Python v2 model) for older local hosts; on by default in Azure",
}
# Read by the code, but from the process environment rather than app settings.
PROCESS_ENV = {
    "HOME": "fallback location of ~/.docker/config.json (settings.py)",
    "DOCKER_CONFIG": "docker's own variable for its config directory (settings.py)",
    "WEBSITE_AUTH_ENABLED": "set by App Service when its Authentication (Easy Auth) is on (the ARM route)",
    "WEBSITE_SITE_NAME": "set by App Service in Azure: the app is not on a local host (the ARM route)",
    "FUNCTIONS_CORETOOLS_ENVIRONMENT": "set by Core Tools (`func start`) and devhost: a local host (the ARM route)",
}
# Read only by the local stand-in for the Functions host.
LOCAL_ONLY = {
    "DEVHOST_FUNCTION_KEY": "devhost's stand-in for function keys (Azure has real ones)",
}
# The Flex Consumption plan refuses these as app settings; a connection string needs shared keys.
FORBIDDEN_IN_BICEP = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                      "AzureWebJobsStorage"}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_BINDING = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%", re.ASCII)
_ENV_NAMES = {"env", "environ", "settings"}  # Mapping-like receivers of .get("X") / ["X"]


def _receiver_is_env(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in _ENV_NAMES
    # os.environ
    return isinstance(node, ast.Attribute) and node.attr == "environ"


class _Reads(ast.NodeVisitor):
    def __init__(self, constants: dict[str, str], collections: dict[str, dict[str, list[str]]]) -> None:
        self.constants = constants
        self.collections = collections  # NAME -> {"keys": [...], "values": [...]} of module-level literals
        self.names: set[str] = set()
        self._loop_names: dict[str, list[str]] = {}  # loop variable -> the names it runs over

    def visit_For(self, node: ast.For) -> None:
        """`for name in NAMES` / `for _, name in NAMES.items()` / `.values()` / `.keys()` over a constant."""
        source, part = node.iter, "keys"
        if isinstance(source, ast.Call) and isinstance(source.func, ast.Attribute) and not source.args:
            part = {"items": "items", "values": "values", "keys": "keys"}.get(source.func.attr, "")
            source = source.func.value
        found = self.collections.get(source.id) if isinstance(source, ast.Name) else None
        targets: list[tuple[ast.expr, str]] = []
        if found and part == "items" and isinstance(node.target, ast.Tuple) and len(node.target.elts) == 2:
            targets = [(node.target.elts[0], "keys"), (node.target.elts[1], "values")]
        elif found and part in ("keys", "values"):
            targets = [(node.target, part)]
        saved = dict(self._loop_names)
        for target, which in targets:
            if isinstance(target, ast.Name):
                self._loop_names[target.id] = found[which]
        self.generic_visit(node)
        self._loop_names = saved

    def _string(self, node: ast.expr | None) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
        elif isinstance(node, ast.Name) and node.id in self.constants:
            value = self.constants[node.id]
        else:
            return None
        return value if _NAME.fullmatch(value) else None

    def _add(self, node: ast.expr | None) -> None:
        if isinstance(node, ast.Name) and node.id in self._loop_names:
            self.names.update(n for n in self._loop_names[node.id] if _NAME.fullmatch(n))
            return
        name = self._string(node)
        if name:
            self.names.add(name)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "get" and _receiver_is_env(func.value) and node.args:
            self._add(node.args[0])
        if (isinstance(func, ast.Attribute) and func.attr == "getenv") or \
                (isinstance(func, ast.Name) and func.id == "getenv"):
            if node.args:
                self._add(node.args[0])
        for before, after in zip(node.args, node.args[1:]):  # helper(env, "X", ...)
            if isinstance(before, ast.Name) and before.id == "env":
                self._add(after)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _receiver_is_env(node.value):
            self._add(node.slice)
        self.generic_visit(node)


def _strings(nodes: list) -> list[str]:
    return [n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _module_constants(tree: ast.Module) -> tuple[dict[str, str], dict[str, dict[str, list[str]]]]:
    """Module-level NAME = "str" and NAME = {..}/[..]/(..) of strings."""
    strings: dict[str, str] = {}
    collections: dict[str, dict[str, list[str]]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets, value = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value = [stmt.target], stmt.value
        else:
            continue
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                strings[target.id] = value.value
            elif isinstance(value, ast.Dict):
                collections[target.id] = {"keys": _strings(value.keys), "values": _strings(value.values)}
            elif isinstance(value, (ast.List, ast.Tuple, ast.Set)):
                collections[target.id] = {"keys": _strings(value.elts), "values": []}
    return strings, collections


def _decorator_strings(tree: ast.Module) -> list[tuple[str, str]]:
    """(keyword, value) of every string keyword argument of every decorator call."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call):
                    out += [(k.arg or "", k.value.value) for k in deco.keywords
                            if isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)]
    return out


def code_reads() -> tuple[set[str], set[str]]:
    """(setting names the code reads, connection names the app's bindings use)."""
    names: set[str] = set()
    connections = {"AzureWebJobsStorage"}  # the host's own storage, always a connection
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        reads = _Reads(*_module_constants(tree))
        reads.visit(tree)
        names |= reads.names
        if path.name == "function_app.py":
            for keyword, value in _decorator_strings(tree):
                names.update(_BINDING.findall(value))
                if keyword == "connection" and _NAME.fullmatch(value):
                    connections.add(value)
                    names.add(value)
    return names, connections


def bicep_settings() -> set[str]:
    text = BICEP.read_text(encoding="utf-8")
    begin, end = text.index("// app-settings:begin"), text.index("// app-settings:end")
    names = set()
    for line in text[begin:end].splitlines():
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:", line)
        if m and not line.lstrip().startswith("//"):
            names.add(m.group(1))
    return names


def local_settings() -> set[str]:
    return set(json.loads(LOCAL.read_text(encoding="utf-8"))["Values"])


def _normalize(names: set[str], connections: set[str]) -> set[str]:
    return {name.split("__", 1)[0] if name.split("__", 1)[0] in connections else name for name in names}


def _missing(wanted: set[str], have: set[str]) -> list[str]:
    return sorted(wanted - have)


def test_the_scanner_sees_each_kind_of_read():
    names, connections = code_reads()
    assert {"IMPORT_TARGET_REGISTRY",  # env.get("X") in settings.py
            "IMPORT_MAX_MANIFESTS",  # _int(env, "X", ...)
            "REGISTRY_AUTH_FILE",  # env["X"]
            "IMPORT_TIMER_SCHEDULE",  # helper(env) in settings.py, bound by function_app.py
            "IMPORT_ARM_ENDPOINT",  # env.get(CONSTANT)
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "IMPORT_MANAGED_IDENTITY_CLIENT_ID"} <= names
    # for _, name in SECRET_SETTINGS.items(): env.get(name)   (triggers/auth.py)
    assert "IMPORT_EVENTGRID_SECRET" in names
    assert "AzureWebJobsStorage" in connections


def test_every_setting_read_is_set_by_the_bicep_and_locally():
    names, connections = code_reads()
    app_settings = _normalize(names, connections) - set(PROCESS_ENV) - set(LOCAL_ONLY)
    bicep = _normalize(bicep_settings(), connections)
    local = _normalize(local_settings(), connections)
    assert not _missing(app_settings, bicep), f"read in code but not set in infra/main.bicep: " \
                                              f"{_missing(app_settings, bicep)}"
    assert not _missing(app_settings, local), f"read in code but missing from local.settings.json.example: " \
                                              f"{_missing(app_settings, local)}"


def test_every_setting_set_is_read_or_a_host_setting():
    names, connections = code_reads()
    read = _normalize(names, connections)
    bicep = _normalize(bicep_settings(), connections) - set(HOST_SETTINGS)
    local = _normalize(local_settings(), connections) - set(HOST_SETTINGS) - set(LOCAL_ONLY)
    assert not _missing(bicep, read), f"set in infra/main.bicep but read by no code: {_missing(bicep, read)}"
    assert not _missing(local, read), f"in local.settings.json.example but read by no code: {_missing(local, read)}"


def test_allow_lists_are_not_stale():
    names, connections = code_reads()
    everywhere = local_settings() | bicep_settings()
    assert set(HOST_SETTINGS) <= everywhere, "a HOST_SETTINGS entry is set nowhere any more: drop it"
    assert not set(HOST_SETTINGS) & names, "a HOST_SETTINGS entry is read by the code: it is an app setting"
    assert set(PROCESS_ENV) | set(LOCAL_ONLY) <= names, "a PROCESS_ENV/LOCAL_ONLY entry is read nowhere: drop it"


def test_bicep_sets_nothing_flex_consumption_or_keyless_storage_refuses():
    assert not bicep_settings() & FORBIDDEN_IN_BICEP
    assert {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential"} <= bicep_settings()


def _bicep_params(path: Path) -> set[str]:
    return set(re.findall(r"^param\s+([A-Za-z_][A-Za-z0-9_]*)\s", path.read_text(encoding="utf-8"), re.MULTILINE))


def test_every_bicep_parameter_is_in_the_example_and_the_guide():
    params = _bicep_params(BICEP)
    example = json.loads((ROOT / "infra" / "main.parameters.example.json").read_text(encoding="utf-8"))
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert not _missing(params - {"location"}, set(example["parameters"])), "add them to main.parameters.example.json"
    assert not [p for p in sorted(params) if f"`{p}`" not in guide], "describe them in docs/deploy.md"
    assert set(example["parameters"]) <= params, "main.parameters.example.json names a parameter main.bicep lacks"


def test_every_module_main_bicep_uses_exists_and_takes_the_parameters_given():
    """No Bicep compiler here: at least catch a module path or parameter name that does not exist."""
    text = BICEP.read_text(encoding="utf-8")
    blocks = re.findall(r"^module\s+\w+\s+'([^']+)'(.*?)^\}\]?$", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 8
    for module, block in blocks:
        path = BICEP.parent / module
        assert path.is_file(), f"{module} is missing"
        one_line = re.search(r"^  params: \{([^\n]*)\}$", block, re.MULTILINE)
        if one_line:
            given = set(re.findall(r"(\w+):", one_line.group(1)))
        else:
            body = re.search(r"^  params: \{\n(.*?)^  \}", block, re.MULTILINE | re.DOTALL)
            assert body, f"cannot find the params of {module}"
            given = set(re.findall(r"^    (\w+):", body.group(1), re.MULTILINE))
        missing = given - _bicep_params(path)
        assert not missing, f"{module} has no parameter(s) {sorted(missing)}"


# ---- README.md's settings table is what Settings does ---------------------------------------------------

def readme_settings() -> dict[str, str]:
    """README.md's settings table: setting -> its default column (backticks removed; "—" = no default)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        if len(cells) == 3 and cells[0] == f"`{name}`" and _NAME.fullmatch(name):  # a row, not the header
            table[name] = cells[1].replace("`", "")
    return table


DESCRIBED_DEFAULTS = {"REGISTRY_AUTH_FILE": "a search order ($DOCKER_CONFIG, then ~/.docker), not one value"}


def _other_value(name: str, default: str) -> str:
    if default.isdigit():
        return str(int(default) + 1)
    if default in ("true", "false"):
        return {"true": "false", "false": "true"}[default]
    return "0 */5 * * * *" if name.endswith("_SCHEDULE") else "example.org"


def test_every_documented_default_is_the_default_settings_applies():
    """For each setting Settings reads, the README's default is what an unset setting means: setting it
    to that default changes nothing, setting it to another value does."""
    from importcore.values.settings import Settings

    table = readme_settings()
    assert {"AzureWebJobsStorage", "IMPORT_QUEUE", "IMPORT_TIMER_SCHEDULE", "IMPORT_MAX_ATTEMPTS"} <= set(table)
    unset = Settings.from_env({})
    checked = []
    for name, default in table.items():
        if default in ("", "empty") or default.startswith("—") or name in DESCRIBED_DEFAULTS:
            continue  # required, nothing by default, or not one value
        if Settings.from_env({name: _other_value(name, default)}) == unset:
            continue  # not read by Settings (e.g. a trigger secret header name)
        assert Settings.from_env({name: default}) == unset, f"README's default of {name} is not Settings' default"
        checked.append(name)
    assert {"IMPORT_QUEUE", "IMPORT_JOBS_TABLE", "IMPORT_TIMER_SCHEDULE", "IMPORT_SYNC_TIMER_SCHEDULE",
            "IMPORT_MAX_MANIFESTS", "IMPORT_PUBLIC_REGISTRIES", "IMPORT_ARM_ENDPOINT",
            "IMPORT_FUNCTION_TIMEOUT_SECONDS"} <= set(checked)

