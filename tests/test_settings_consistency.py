"""README's settings table, Settings, infra/main.bicep and local.settings.json.example agree.

What the app reads is asked of the code rather than scraped from it: every name
``Settings.from_env`` looks up (in a recording mapping), the ``%X%`` binding expressions and
``connection="X"`` names of function_app.py's decorators, and the local host's own settings.
test_only_settings_and_the_shells_read_the_environment keeps Settings the only reader.

A Functions connection named X may be given as X (a connection string, as locally with Azurite)
or as X__accountName, X__credential, X__clientId... (identity-based, as in Azure): both count as X.
"""
from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from importcore.values.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "importcore"
BICEP = ROOT / "infra" / "main.bicep"
LOCAL = ROOT / "local.settings.json.example"
README = ROOT / "README.md"

# Set for the Functions host, never read by our code.
HOST_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME": "Core Tools / devhost pick the Python worker with it; Flex Consumption takes "
                                "functionAppConfig.runtime instead and rejects it as an app setting",
    "AzureWebJobsFeatureFlags": "EnableWorkerIndexing (Python v2 model) for older local hosts; on by default in Azure",
}
# Read by Settings, but from the process environment (the platform's or the user's) rather than app settings.
PROCESS_ENV = {
    "HOME": "fallback location of ~/.docker/config.json",
    "DOCKER_CONFIG": "docker's own variable for its config directory",
    "WEBSITE_AUTH_ENABLED": "set by App Service when its Authentication (Easy Auth) is on (the ARM route)",
    "WEBSITE_SITE_NAME": "set by App Service in Azure: the app is not on a local host (the ARM route)",
    "FUNCTIONS_CORETOOLS_ENVIRONMENT": "set by Core Tools (`func start`) and devhost: a local host (the ARM route)",
}
# Read only by the local stand-in for the Functions host (a shell, which reads its own settings).
LOCAL_ONLY = {
    "DEVHOST_FUNCTION_KEY": "devhost's stand-in for function keys (Azure has real ones)",
}
# Where os.environ may be read: the one Settings, and the local host, which exports local.settings.json.
ENV_READERS = ("values/settings.py", "devhost/")
# The Flex Consumption plan refuses these as app settings; a connection string needs shared keys.
FORBIDDEN_IN_BICEP = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                      "AzureWebJobsStorage"}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_BINDING = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%", re.ASCII)


class _Asked(Mapping[str, str]):
    """An environment that holds nothing and remembers every name it was asked for."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_reads() -> set[str]:
    """Every name Settings.from_env looks up (each one is looked up, set or not)."""
    asked = _Asked()
    Settings.from_env(asked)
    return asked.names


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


def binding_reads() -> tuple[set[str], set[str]]:
    """(settings function_app.py's bindings name, the connections among them)."""
    names: set[str] = set()
    connections = {"AzureWebJobsStorage"}  # the host's own storage, always a connection
    for keyword, value in _decorator_strings(ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))):
        names.update(_BINDING.findall(value))
        if keyword == "connection" and _NAME.fullmatch(value):
            connections.add(value)
            names.add(value)
    return names, connections


def code_reads() -> tuple[set[str], set[str]]:
    """(setting names the code reads, connection names the app's bindings use); the local host's
    own settings count as read (test_allow_lists_are_not_stale checks that it does read them)."""
    names, connections = binding_reads()
    return names | settings_reads() | set(LOCAL_ONLY), connections


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


def _env_reads(path: Path) -> list[int]:
    """Lines of `path` that read the process environment (os.environ, os.getenv, environ, getenv)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in ("environ", "getenv"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and \
                {a.name for a in node.names} & {"environ", "getenv"}:
            lines.append(node.lineno)
    return lines


def test_only_settings_and_the_shells_read_the_environment():
    """Settings is built once, by a shell, and passed down: no other module reads the environment."""
    readers = {str(p.relative_to(PACKAGE)): _env_reads(p) for p in sorted(PACKAGE.rglob("*.py"))}
    readers["../function_app.py"] = _env_reads(ROOT / "function_app.py")
    found = {path: lines for path, lines in readers.items() if lines and not path.startswith(ENV_READERS)}
    assert found == {}, "read the setting through values/settings.py's Settings instead"
    assert readers["values/settings.py"], "Settings reads the environment: the check above checks something"


def test_settings_reads_are_seen():
    names = settings_reads()
    assert {"IMPORT_TARGET_REGISTRY", "IMPORT_MAX_MANIFESTS", "REGISTRY_AUTH_FILE", "IMPORT_ARM_ENDPOINT",
            "APPLICATIONINSIGHTS_CONNECTION_STRING", "IMPORT_MANAGED_IDENTITY_CLIENT_ID", "IMPORT_EVENTGRID_SECRET",
            "IMPORT_DEDUPE_WINDOW_SECONDS", "IMPORT_MIRROR_RULES_FILE", "IMPORT_TIMER_SCHEDULE",
            "IMPORT_QUEUE", "HOME"} <= names
    assert "AzureWebJobsStorage" in binding_reads()[1]  # connection="AzureWebJobsStorage" in function_app.py


def readme_settings() -> dict[str, str]:
    """README's settings table: name -> its default column, backticks removed ("—" = no default); in
    a row naming several, `_HARBOR` after `X_GITHUB` is X_HARBOR."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("\n## Settings\n"):]
    table = table[:table.index("\n## ", 1)]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[0])
        first = names[0]
        for name in names:
            full = first.rsplit("_", 1)[0] + name if name.startswith("_") else name
            rows[full] = cells[1].replace("`", "")
    return rows


def test_readme_lists_every_setting_the_app_reads_and_no_other():
    names, _ = code_reads()
    listed = set(readme_settings())
    assert not sorted(names - set(PROCESS_ENV) - listed), "add a row to README's settings table"
    assert not sorted(listed - names), "README's settings table lists a setting nothing reads"


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
    assert set(PROCESS_ENV) <= settings_reads(), "a PROCESS_ENV entry is read nowhere: drop it"
    devhost = "".join(p.read_text(encoding="utf-8") for p in sorted((PACKAGE / "devhost").glob("*.py")))
    assert all(f'"{name}"' in devhost for name in LOCAL_ONLY), "a LOCAL_ONLY entry is read nowhere: drop it"


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
    table = readme_settings()
    assert {"AzureWebJobsStorage", "IMPORT_QUEUE", "IMPORT_TIMER_SCHEDULE", "IMPORT_MAX_ATTEMPTS"} <= set(table)
    unset = Settings.from_env({})
    checked = []
    for name, default in table.items():
        if default in ("", "empty") or default.startswith("—") or name in DESCRIBED_DEFAULTS:
            continue  # required, nothing by default, or not one value
        assert Settings.from_env({name: _other_value(name, default)}) != unset, \
            f"README gives {name} a default, but Settings does not read it"
        assert Settings.from_env({name: default}) == unset, f"README's default of {name} is not Settings' default"
        checked.append(name)
    assert {"IMPORT_QUEUE", "IMPORT_JOBS_TABLE", "IMPORT_TIMER_SCHEDULE", "IMPORT_SYNC_TIMER_SCHEDULE",
            "IMPORT_MAX_MANIFESTS", "IMPORT_PUBLIC_REGISTRIES", "IMPORT_ARM_ENDPOINT",
            "IMPORT_FUNCTION_TIMEOUT_SECONDS", "IMPORT_DEDUPE_WINDOW_SECONDS",
            "IMPORT_WEBHOOK_SECRET_HEADER"} <= set(checked)

