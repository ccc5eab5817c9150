"""infra/ without a Bicep compiler: every .bicep file must parse, and the templates must keep clear
of the deployment failures a review against the Flex Consumption, Event Grid, Key Vault, Private DNS
and App Service documentation found. Each rule names what goes wrong without it.

The parser is tree-sitter's Bicep grammar (syntax only: no types, no scopes, no API schemas), so
`az bicep build -f infra/main.bicep` is still needed before a first deployment. The package is pinned
in requirements-dev.txt; without it this module fails to import, which pytest reports as an error:
these checks never skip.

The rules read the parse tree, not the text: a property is found by its path in a resource's body,
a module's parameters by their names, and the name checks of main.bicep are *evaluated* by a small
interpreter for the handful of Bicep functions they use, against names that must pass and fail.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tree_sitter_bicep  # noqa: I001  (requirements-dev.txt; missing = an import error, not a skip)
from tree_sitter import Language, Node, Parser

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
EVENTS = INFRA / "events.bicep"
MODULES = INFRA / "modules"
GUIDE = ROOT / "docs" / "deploy.md"

_PARSER = Parser(Language(tree_sitter_bicep.language()))


# -- a small model of a parsed template ----------------------------------------------------------

def _text(node: Node | None) -> str:
    return "" if node is None else node.text.decode("utf-8")


_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


def literal_string(node: Node | None) -> str | None:
    """The value of a string without interpolation, else None."""
    if node is None or node.type != "string":
        return None
    out = []
    for child in node.children:
        if child.type == "interpolation":
            return None
        if child.type == "string_content":
            out.append(_text(child))
        elif child.type == "escape_sequence":
            out.append(_ESCAPES.get(_text(child), _text(child)))
    return "".join(out)


def props(node: Node | None) -> dict[str, Node]:
    """An object's properties, key -> value node ({} for anything but an object)."""
    out: dict[str, Node] = {}
    if node is None or node.type != "object":
        return out
    for prop in node.named_children:
        if prop.type != "object_property" or len(prop.named_children) < 2:
            continue
        key, value = prop.named_children[0], prop.named_children[-1]
        out[literal_string(key) if key.type == "string" else _text(key)] = value
    return out


def get(node: Node | None, *path: str) -> Node | None:
    for key in path:
        node = props(node).get(key)
    return node


def items(node: Node | None) -> list[Node]:
    return [] if node is None or node.type != "array" else [c for c in node.named_children if c.type != "comment"]


def identifiers(node: Node | None) -> set[str]:
    """Every identifier an expression refers to (object keys and member names are not references)."""
    found: set[str] = set()

    def walk(n: Node) -> None:
        if n.type == "identifier":
            found.add(_text(n))
        children = n.children
        if n.type == "object_property" and children:
            children = children[1:]  # the key
        for child in children:
            walk(child)
    if node is not None:
        walk(node)
    return found


def calls(node: Node | None, name: str) -> list[Node]:
    """Every call of function `name` within an expression."""
    found: list[Node] = []

    def walk(n: Node) -> None:
        if n.type == "call_expression" and _text(n.child_by_field_name("function")) == name:
            found.append(n)
        for child in n.children:
            walk(child)
    if node is not None:
        walk(node)
    return found


@dataclass
class Decl:
    kind: str  # parameter, variable, resource, module, output, ...
    name: str
    node: Node
    decorators: dict[str, list[Node]] = field(default_factory=dict)
    target: str = ""  # resource type@version, or module path
    condition: Node | None = None  # the `if (...)` expression
    loop: bool = False
    value: Node | None = None  # body object (resource/module) or value expression (param default, var, output)

    @property
    def body(self) -> Node | None:
        return self.value

    def prop(self, *path: str) -> Node | None:
        return get(self.value, *path)


def _declaration(node: Node, decorators: dict[str, list[Node]]) -> Decl | None:
    kinds = {"parameter_declaration": "param", "variable_declaration": "var", "resource_declaration": "resource",
             "module_declaration": "module", "output_declaration": "output"}
    kind = kinds.get(node.type)
    if kind is None:
        return None
    named = node.named_children
    decl = Decl(kind, _text(named[0]), node, decorators)
    rest = named[1:]
    if kind in ("resource", "module"):
        decl.target = literal_string(rest[0]) or ""
        rest = [n for n in rest[1:] if n.type != "comment"]
    body = rest[-1] if rest else None
    if body is not None and body.type == "if_statement":
        decl.condition = body.named_children[0]
        body = body.named_children[-1]
    elif body is not None and body.type == "for_statement":
        decl.loop = True
        body = body.child_by_field_name("body") or body.named_children[-1]
        if body.type == "if_statement":
            decl.condition = body.named_children[0]
            body = body.named_children[-1]
    if kind == "param" and body is not None and body.type == "type":
        body = None  # no default
    decl.value = body
    return decl


class Template:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = path.read_bytes()
        self.tree = _PARSER.parse(self.source)
        self.decls: list[Decl] = []
        pending: dict[str, list[Node]] = {}
        for node in self.tree.root_node.named_children:
            if node.type == "decorators":
                for deco in node.named_children:
                    call = deco.named_children[0] if deco.named_children else None
                    if call is not None and call.type == "call_expression":
                        name = _text(call.child_by_field_name("function")).split(".")[-1]
                        pending[name] = list(call.child_by_field_name("arguments").named_children)
                continue
            decl = _declaration(node, pending)
            if node.type != "comment":
                pending = {}
            if decl is not None:
                self.decls.append(decl)

    def errors(self) -> list[str]:
        found = []

        def walk(n: Node) -> None:
            if n.is_error or n.is_missing:
                found.append(f"{self.path.relative_to(ROOT)}:{n.start_point[0] + 1}:{n.start_point[1] + 1}: "
                             f"{'missing ' + n.type if n.is_missing else 'cannot parse ' + _text(n)[:60]!r}")
            for child in n.children:
                walk(child)
        walk(self.tree.root_node)
        return found

    def of(self, kind: str) -> list[Decl]:
        return [d for d in self.decls if d.kind == kind]

    def one(self, kind: str, name: str) -> Decl:
        found = [d for d in self.decls if d.kind == kind and d.name == name]
        assert len(found) == 1, f"{self.path.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def resources(self, rtype: str) -> list[Decl]:
        """Resources of type `rtype` (any API version)."""
        return [d for d in self.of("resource") if d.target.split("@")[0].lower() == rtype.lower()]

    def modules(self, path: str) -> list[Decl]:
        return [d for d in self.of("module") if d.target == path]

    def uses(self, name: str) -> list[Decl]:
        """The declarations whose value or condition mentions identifier `name`."""
        return [d for d in self.decls if name in identifiers(d.value) | identifiers(d.condition)]


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


_TEMPLATES: dict[Path, Template] = {}


def template(path: Path) -> Template:
    if path not in _TEMPLATES:
        _TEMPLATES[path] = Template(path)
    return _TEMPLATES[path]


def module_template(caller: Path, decl: Decl) -> Template:
    return template((caller.parent / decl.target).resolve())


# -- a tiny evaluator for the expressions of main.bicep's name checks ------------------------------

class Unsupported(Exception):
    pass


def evaluate(node: Node, env: dict[str, object]) -> object:
    t = node.type
    if t == "parenthesized_expression":
        return evaluate(node.named_children[0], env)
    if t == "string":
        value = literal_string(node)
        if value is None:
            raise Unsupported(_text(node))
        return value
    if t == "number":
        return int(_text(node))
    if t == "boolean":
        return _text(node) == "true"
    if t == "identifier":
        return env[_text(node)]
    if t == "unary_expression":
        op = _text(node.child_by_field_name("operator"))
        if op != "!":
            raise Unsupported(op)
        return not evaluate(node.child_by_field_name("argument"), env)
    if t == "binary_expression":
        op = _text(node.child_by_field_name("operator"))
        left = node.child_by_field_name("left")
        right = node.child_by_field_name("right")
        if op == "&&":
            return bool(evaluate(left, env)) and bool(evaluate(right, env))
        if op == "||":
            return bool(evaluate(left, env)) or bool(evaluate(right, env))
        a, b = evaluate(left, env), evaluate(right, env)
        ops = {"==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b, "<=": lambda: a <= b,
               ">": lambda: a > b, ">=": lambda: a >= b}
        if op not in ops:
            raise Unsupported(op)
        return ops[op]()
    if t == "lambda_expression":
        params = [_text(c) for c in node.named_children[:-1]]
        body = node.named_children[-1]
        return lambda *args: evaluate(body, {**env, **dict(zip(params, args))})
    if t == "call_expression":
        name = _text(node.child_by_field_name("function"))
        args = [evaluate(a, env) for a in node.child_by_field_name("arguments").named_children]
        functions = {
            "empty": lambda v: len(v) == 0,
            "length": len,
            "range": lambda start, count: list(range(start, start + count)),
            "filter": lambda seq, pred: [x for x in seq if pred(x)],
            "contains": lambda container, item: item in container,
            "substring": lambda s, start, n: s[start:start + n],
            "startsWith": lambda s, prefix: s.startswith(prefix),
            "endsWith": lambda s, suffix: s.endswith(suffix),
            "toLower": str.lower,
        }
        if name not in functions:
            raise Unsupported(name)
        return functions[name](*args)
    raise Unsupported(t)


# == 1. syntax ==================================================================================

def test_there_are_templates_to_check():
    names = {p.relative_to(INFRA).as_posix() for p in bicep_files()}
    assert {"main.bicep", "events.bicep", "modules/functionapp.bicep", "modules/eventgrid.bicep",
            "modules/network.bicep", "modules/storage.bicep", "modules/keyvault.bicep"} <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_bicep_file_parses(path):
    assert template(path).errors() == []


def test_the_parser_does_report_broken_bicep():
    """The parse check means something only if a broken file is reported."""
    for broken in ["resource site 'Microsoft.Web/sites@2024-04-01' = {\n  name: 'x'\n",
                   "var a = b ? c\n", "param p string = 'unterminated\n", "output o string = x.\n"]:
        tree = _PARSER.parse(broken.encode())
        assert tree.root_node.has_error, broken


@pytest.mark.parametrize("caller", [MAIN, EVENTS], ids=lambda p: p.name)
def test_every_module_call_matches_the_module(caller):
    """A module given a parameter it lacks, or not given one it requires, fails at build time."""
    tmpl = template(caller)
    assert tmpl.of("module")
    for decl in tmpl.of("module"):
        mod = module_template(caller, decl)
        declared = {p.name for p in mod.of("param")}
        required = {p.name for p in mod.of("param") if p.value is None}
        given = set(props(decl.prop("params")))
        assert given <= declared, f"{caller.name} {decl.name}: {decl.target} has no {sorted(given - declared)}"
        assert required <= given, f"{caller.name} {decl.name}: {decl.target} needs {sorted(required - given)}"


# == 2. the Function App on Flex Consumption ======================================================

# siteConfig properties of the other plans that Flex Consumption refuses ("... for Flex Consumption
# sites is invalid"): the plan sets them itself, or has no such thing.
FLEX_REFUSED_SITECONFIG = {"ftpsState", "linuxFxVersion", "use32BitWorkerProcess", "alwaysOn", "javaVersion",
                           "netFrameworkVersion", "powerShellVersion", "functionAppScaleLimit",
                           "minimumElasticInstanceCount"}


def flex_sites() -> list[tuple[Template, Decl]]:
    found = []
    for path in bicep_files():
        for site in template(path).resources("Microsoft.Web/sites"):
            if site.prop("properties", "functionAppConfig") is not None:
                found.append((template(path), site))
    return found


def test_the_flex_site_sets_no_siteconfig_flex_refuses():
    sites = flex_sites()
    assert sites, "no Flex Consumption site (properties.functionAppConfig) found"
    for _, site in sites:
        refused = set(props(site.prop("properties", "siteConfig"))) & FLEX_REFUSED_SITECONFIG
        assert not refused, f"Flex Consumption rejects siteConfig {sorted(refused)}"


def test_basic_auth_publishing_is_off():
    """FTP and the SCM site's user name/password off: deployments authenticate with Entra ID."""
    for tmpl, site in flex_sites():
        policies = {}
        for policy in tmpl.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies"):
            assert _text(policy.prop("parent")) == site.name
            assert policy.condition is None, f"policy {policy.name} must not be conditional"
            policies[literal_string(policy.prop("name"))] = _text(policy.prop("properties", "allow"))
        assert policies == {"scm": "false", "ftp": "false"}


def test_entra_authentication_lets_anonymous_callers_through_to_the_app():
    """Easy Auth validates bearer tokens for the ARM-compatible route, but function keys, webhooks and
    Event Grid carry none: it must not turn them away (the app refuses unauthenticated callers itself
    where a principal is needed)."""
    tmpl = template(MODULES / "functionapp.bicep")
    auth = [d for d in tmpl.resources("Microsoft.Web/sites/config") if literal_string(d.prop("name")) == "authsettingsV2"]
    assert len(auth) == 1, "no authsettingsV2 config on the site"
    auth = auth[0]
    assert "apiAuthClientId" in identifiers(auth.condition) and "empty" in _text(auth.condition), \
        "auth must be configured only when apiAuthClientId is given"
    check = auth.prop("properties", "globalValidation")
    assert literal_string(get(check, "unauthenticatedClientAction")) == "AllowAnonymous"
    assert _text(get(check, "requireAuthentication")) == "false"
    entra = auth.prop("properties", "identityProviders", "azureActiveDirectory")
    assert _text(get(entra, "enabled")) == "true"
    assert "apiAuthClientId" in identifiers(get(entra, "registration", "clientId"))
    issuer = get(entra, "registration", "openIdIssuer")
    assert calls(issuer, "environment") and calls(issuer, "tenant"), "issuer from environment() and tenant()"
    assert "apiAuthClientId" in identifiers(get(entra, "validation", "allowedAudiences"))
    # wired from main.bicep
    app = template(MAIN).modules("modules/functionapp.bicep")[0]
    assert _text(app.prop("params", "apiAuthClientId")) == "apiAuthClientId"
    assert "apiAuthAudience" in identifiers(app.prop("params", "apiAuthAudiences"))


# == 3. Event Grid ===============================================================================

def event_subscriptions() -> list[tuple[Template, Decl]]:
    return [(template(p), d) for p in bicep_files()
            for d in template(p).resources("Microsoft.EventGrid/systemTopics/eventSubscriptions")]


def test_the_event_grid_secret_is_a_secret_header_not_a_query_string():
    """?token= ends up in request logs and telemetry; a delivery header marked secret does not."""
    subs = event_subscriptions()
    assert subs, "no Event Grid subscription found"
    for tmpl, sub in subs:
        webhook = sub.prop("properties", "destination", "properties")
        url = _text(get(webhook, "endpointUrl"))
        assert url and "?" not in url and "token" not in url.lower(), f"endpoint URL carries a query: {url}"
        mappings = items(get(webhook, "deliveryAttributeMappings"))
        static = [m for m in mappings if literal_string(get(m, "type")) == "Static"]
        assert len(static) == 1
        assert _text(get(static[0], "properties", "isSecret")) == "true"
        value = _text(get(static[0], "properties", "value"))
        header = _text(get(static[0], "name"))
        assert "secure" in tmpl.one("param", value).decorators
        assert tmpl.one("param", header).value is None  # given by the caller, not defaulted here


def test_the_secret_header_is_the_one_the_app_reads():
    settings_py = (ROOT / "importcore" / "values" / "settings.py").read_text(encoding="utf-8")
    default = re.search(r'^DEFAULT_SECRET_HEADER = "([^"]+)"', settings_py, re.MULTILINE).group(1)
    for path in (MAIN, EVENTS):
        assert literal_string(template(path).one("param", "webhookSecretHeader").value) == default
    call = template(EVENTS).modules("modules/eventgrid.bicep")[0]
    assert _text(call.prop("params", "secretHeader")) == "webhookSecretHeader"
    settings = MAIN.read_text(encoding="utf-8")
    assert re.search(r"^\s*IMPORT_WEBHOOK_SECRET_HEADER: webhookSecretHeader$", settings, re.MULTILINE)


def test_an_existing_system_topic_is_reused():
    """One system topic per source: creating a second one fails the deployment."""
    tmpl = template(MODULES / "eventgrid.bicep")
    topics = tmpl.resources("Microsoft.EventGrid/systemTopics")
    assert len(topics) == 1 and topics[0].condition is not None, "the topic must be created conditionally"
    create = tmpl.one("var", _text(topics[0].condition).strip("()"))
    assert "existingTopicName" in identifiers(create.value) and calls(create.value, "empty")
    (_, sub), = [(t, s) for t, s in event_subscriptions() if t is tmpl]
    assert "topicName" in identifiers(sub.prop("name")) and sub.prop("parent") is None
    assert "existingTopicName" in identifiers(tmpl.one("var", "topicName").value)
    call = template(EVENTS).modules("modules/eventgrid.bicep")[0]
    assert _text(call.prop("params", "existingTopicName")) == "eventGridSystemTopicName"


def test_the_subscription_is_a_separate_step_that_fails_early_without_a_secret():
    """The handshake runs while the subscription is created: not in main.bicep, right after the app
    settings restart the app; and never with an empty secret (the app would answer 401)."""
    main = template(MAIN)
    assert not main.modules("modules/eventgrid.bicep")
    assert not main.resources("Microsoft.EventGrid/systemTopics/eventSubscriptions")
    events = template(EVENTS)
    call, = events.modules("modules/eventgrid.bicep")
    secret = events.one("var", _text(call.prop("params", "eventGridSecret")))
    assert secret.value.type == "ternary_expression"
    condition = secret.value.child_by_field_name("condition")
    assert _text(condition) == "length(eventGridSecret) >= 16"
    assert calls(secret.value.child_by_field_name("alternative"), "fail")
    source = events.one("var", "eventGridSecret")
    assert "webhookSecrets" in identifiers(source.value)
    assert "secure" in events.one("param", "webhookSecrets").decorators


# == 4. start-up order with the VNet =============================================================

def test_app_settings_wait_for_the_private_endpoints_and_the_roles():
    """Writing the settings starts the host: storage it cannot reach yet, or a Key Vault reference that
    cannot resolve, leaves it broken until the next restart."""
    main = template(MAIN)
    settings, = main.modules("modules/appsettings.bicep")
    waits = {_text(n) for n in items(settings.prop("dependsOn"))}
    endpoints = {d.name for d in main.modules("modules/privateEndpoint.bicep")}
    assert len(endpoints) >= 3, "storage, vault and registry private endpoints"
    assert endpoints <= waits, f"settings do not wait for {sorted(endpoints - waits)}"
    before = {d.name for d in main.modules("modules/keyvault.bicep") + main.modules("modules/storageRoles.bicep")}
    before |= {d.name for d in main.modules("modules/registryRole.bicep") if not d.loop}  # AcrPush on the target
    assert before <= waits | identifiers(settings.prop("params")), f"missing {sorted(before - waits)}"


# == 5. names and inputs =========================================================================

NAME_CHECKS = [
    # param, minLength, maxLength, accepted, refused
    ("baseName", 3, 20, ["regimport", "reg-import-2", "abc"],
     ["reg_import", "reg.import", "RegImport", "1regimport", "-regimport", "regimport-", "reg import"]),
    # queue names: 3-63 characters, and the host adds "-poison"
    ("queueName", 3, 63 - len("-poison"), ["imports", "import-jobs-1", "1imports"],
     ["Imports", "imp--orts", "-imports", "imports-", "imp_orts", "imp.orts"]),
    ("jobsTableName", 3, 63, ["importjobs", "ImportJobs", "jobs2"],
     ["import-jobs", "import_jobs", "1jobs", "import.jobs"]),
]


@pytest.mark.parametrize("param,min_len,max_len,accepted,refused", NAME_CHECKS, ids=[c[0] for c in NAME_CHECKS])
def test_names_are_checked_before_anything_is_created(param, min_len, max_len, accepted, refused):
    main = template(MAIN)
    decl = main.one("param", param)
    assert _text(decl.decorators["minLength"][0]) == str(min_len)
    assert _text(decl.decorators["maxLength"][0]) == str(max_len)
    checked = main.one("var", "checked" + param[0].upper() + param[1:])
    assert checked.value.type == "ternary_expression"
    assert _text(checked.value.child_by_field_name("consequence")) == param
    assert calls(checked.value.child_by_field_name("alternative"), "fail")
    ok = main.one("var", _text(checked.value.child_by_field_name("condition")))
    # every other use goes through the checked value
    users = {d.name for d in main.uses(param)}
    assert users == {ok.name, checked.name}, f"{param} used unchecked in {sorted(users - {ok.name, checked.name})}"
    for value in accepted:
        assert evaluate(ok.value, {param: value}) is True, f"{param}={value!r} refused"
    for value in refused:
        assert evaluate(ok.value, {param: value}) is False, f"{param}={value!r} accepted"


def test_webhook_secrets_are_checked():
    main = template(MAIN)
    checked = main.one("var", "checkedWebhookSecrets")
    assert len(calls(checked.value, "fail")) == 2
    assert {d.name for d in main.uses("webhookSecrets")} == {"unknownSenders", "shortSecrets", "checkedWebhookSecrets"}


# == 6. Key Vault after az group delete ============================================================

def test_a_redeploy_can_recover_or_avoid_the_soft_deleted_vault():
    vault, = template(MODULES / "keyvault.bicep").resources("Microsoft.KeyVault/vaults")
    assert _text(vault.prop("properties", "createMode")) == "createMode"
    assert _text(vault.prop("properties", "enablePurgeProtection")) == "true"
    main = template(MAIN)
    call, = main.modules("modules/keyvault.bicep")
    assert _text(call.prop("params", "createMode")) == "keyVaultCreateMode"
    allowed = {literal_string(n) for n in items(main.one("param", "keyVaultCreateMode").decorators["allowed"][0])}
    assert allowed == {"default", "recover"}
    suffix = main.one("var", "suffix")
    assert "nameSalt" in identifiers(suffix.value) and calls(suffix.value, "uniqueString")
    assert {"appName", "storageName", "vaultName"} <= {d.name for d in main.uses("suffix")}


# == 7. private DNS, storage network =============================================================

def test_dns_zone_links_fall_back_to_public_dns():
    """A name with a private endpoint elsewhere answers NXDOMAIN in a linked zone without a fallback."""
    network = template(MODULES / "network.bicep")
    links = network.resources("Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    assert links
    for link in links:
        assert literal_string(link.prop("properties", "resolutionPolicy")) == "NxDomainRedirect", link.name


def test_the_registry_zone_is_created_only_when_needed():
    network = template(MODULES / "network.bicep")
    registry_zones = [z for z in network.resources("Microsoft.Network/privateDnsZones")
                      if "acrLoginServer" in _text(z.prop("name")) or "registryZoneName" in _text(z.prop("name"))]
    assert len(registry_zones) == 1 and registry_zones[0].condition is not None
    call, = template(MAIN).modules("modules/network.bicep")
    assert identifiers(call.prop("params", "registryDnsZone")) == {"targetRegistryPrivateEndpoint",
                                                                    "registryPrivateDnsZone"}


PUBLIC_CLOUD_NAMES = ["azurecr.io", "vault.azure.net", "vaultcore.azure.net", "core.windows.net",
                      "management.azure.com", "login.microsoftonline.com", "sts.windows.net", "azurewebsites.net"]


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA).as_posix())
def test_no_public_cloud_names_are_hard_coded(path):
    """Zones and endpoints come from environment(), so the templates also work in sovereign clouds.
    (Descriptions may name them as examples.)"""
    tmpl = template(path)
    described = {n.id for d in tmpl.decls for args in d.decorators.values() for a in args for n in _walk(a)}
    for node in _walk(tmpl.tree.root_node):
        if node.type == "string_content" and node.id not in described:
            for name in PUBLIC_CLOUD_NAMES:
                assert name not in _text(node).lower(), f"{path.name}:{node.start_point[0] + 1}: {_text(node)}"


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)


def test_storage_keeps_a_public_endpoint_for_trusted_services():
    """publicNetworkAccess 'Disabled' also shuts out the trusted services: the platform can then no
    longer write the package of a deployment into the deployment container."""
    account, = template(MODULES / "storage.bicep").resources("Microsoft.Storage/storageAccounts")
    assert literal_string(account.prop("properties", "publicNetworkAccess")) == "Enabled"
    acls = account.prop("properties", "networkAcls")
    assert literal_string(get(acls, "bypass")) == "AzureServices"
    assert "restrictNetwork" in identifiers(get(acls, "defaultAction"))
    call, = template(MAIN).modules("modules/storage.bicep")
    assert _text(call.prop("params", "restrictNetwork")) == "enableVnet"


# == 8. monitoring, roles =======================================================================

def test_application_insights_can_refuse_key_based_ingestion():
    monitoring = template(MODULES / "monitoring.bicep")
    component, = monitoring.resources("Microsoft.Insights/components")
    assert _text(component.prop("properties", "DisableLocalAuth")) == "disableLocalAuth"
    publisher, = monitoring.resources("Microsoft.Authorization/roleAssignments")
    assert "monitoringMetricsPublisher" in identifiers(publisher.prop("properties", "roleDefinitionId"))
    main = template(MAIN)
    host = main.one("var", "hostSettings")
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in {k for k in props(host.value.child_by_field_name("consequence"))}
    assert "appInsightsDisableLocalAuth" in identifiers(host.value.child_by_field_name("condition"))
    call, = main.modules("modules/appsettings.bicep")
    assert "hostSettings" in identifiers(call.prop("params", "appSettings"))


# Built-in role definition ids (Microsoft Learn, "Azure built-in roles").
ROLES = {
    "8311e382-0749-4cb8-b61a-304f252e45ec": "AcrPush",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_every_role_id_is_a_known_built_in_role():
    seen = set()
    for path in bicep_files():
        for node in _walk(template(path).tree.root_node):
            if node.type == "string_content":
                for guid in _GUID.findall(_text(node).lower()):
                    assert guid in ROLES, f"{path.name}: {guid} is not a role this template is meant to assign"
                    seen.add(guid)
    assert seen == set(ROLES)


# == 9. parameters files and the guide ===========================================================

def test_the_events_example_names_the_events_parameters():
    params = {d.name for d in template(EVENTS).of("param")}
    example = json.loads((INFRA / "events.parameters.example.json").read_text(encoding="utf-8"))["parameters"]
    assert set(example) <= params
    assert params - set(example) == {"webhookSecrets"}  # secrets stay out of parameters files


def test_the_guide_describes_the_steps_that_changed():
    guide = GUIDE.read_text(encoding="utf-8")
    missing = [p.name for p in template(EVENTS).of("param") if f"`{p.name}`" not in guide]
    assert not missing, f"describe them in docs/deploy.md: {missing}"
    assert "?token=" not in guide, "Event Grid sends the secret in a header now"
    for needed in ["infra/events.bicep", "RoleAssignmentExists", "keyVaultCreateMode=recover", "nameSalt",
                   "api://", "/.default", "DefaultAzureCredential", "az ad app create",
                   "/providers/Microsoft.ContainerRegistry/registries/{name}/importImage",
                   "az bicep build", "NxDomainRedirect", "Entra"]:
        assert needed in guide, f"docs/deploy.md does not mention {needed}"
    removing = guide[guide.index("## Removing it"):]
    assert "recover" in removing and "nameSalt" in removing


def test_the_readme_says_how_the_templates_are_checked():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Deploy to Azure"):]
    section = section[:section.index("\n## ", 1)]
    assert "az bicep build" in section and "tests/test_infra.py" in section
