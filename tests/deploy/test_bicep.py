"""deploy/azure's Bicep holds together as the Bicep compiler would check it, and deploys what the
docs say: every role of docs/azure.md's commands, the cluster the provisioning code describes,
the Stream Analytics job ``bscore asa provision`` sends, and no secret.

No Bicep compiler or ARM validator can be installed here (neither is on PyPI, npm or Debian), so
this reads the templates' structure (tests/deploy/bicep.py); what Azure itself would refuse
(a property the resource provider does not know, a region without a SKU) is not caught here.
"""

from __future__ import annotations

import re
import shlex
from importlib import metadata
from pathlib import Path

import pytest

from resources import asa
from tests.deploy import bicep

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "azure"
MAIN = DEPLOY / "main.bicep"
FILES = sorted(DEPLOY.rglob("*.bicep"))
DECLARATIONS = {path: bicep.read(path) for path in FILES}

# Azure's built-in role definition ids (the same in every tenant).
ROLES = {
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Azure Event Hubs Data Receiver": "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
    "Azure Event Hubs Data Sender": "2b629674-e913-4c01-ae53-ef4638d8f975",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
}
# docs/azure.md's shell variables, as the template's identities and scopes.
DOC_IDENTITIES = {"$HOST_PRINCIPAL_ID": "host", "$CLUSTER_PRINCIPAL_ID": "cluster", "$ASA_PRINCIPAL_ID": "asa",
                  "<device or user principal>": "sender"}
DOC_SCOPES = {"$STORAGE_ID": "Microsoft.Storage/storageAccounts",
              "$HUB_ID": "Microsoft.EventHub/namespaces/eventhubs",
              "$WS_ID": "Microsoft.MachineLearningServices/workspaces",
              "$REGISTRY_ID": "Microsoft.ContainerRegistry/registries"}


def declarations(path: Path, kind: str) -> dict[str, bicep.Declaration]:
    return {d.name: d for d in DECLARATIONS[path] if d.kind == kind}


def resource(path: Path, name: str) -> bicep.Declaration:
    return declarations(path, "resource")[name]


def test_templates_are_read_whole():
    names = {path.relative_to(DEPLOY).as_posix() for path in FILES}
    assert names == {"main.bicep", "modules/storage.bicep", "modules/events.bicep", "modules/sql.bicep",
                     "modules/ml.bicep", "modules/host.bicep"}
    # Every resource body was bracket-matched to its end (the reader raises on an unbalanced one).
    for path, found in DECLARATIONS.items():
        for declaration in found:
            if declaration.kind in ("resource", "module"):
                assert declaration.value.endswith(("}", "}]")), (path.name, declaration.name)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_resource_types_and_api_versions_look_valid(path):
    for declaration in declarations(path, "resource").values():
        assert re.fullmatch(r"Microsoft\.[A-Za-z]+(/[A-Za-z]+)+", declaration.resource_type), declaration.header
        assert re.fullmatch(r"20(2[0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])(-preview)?",
                            declaration.api_version), declaration.header
        assert not declaration.api_version.endswith("-preview"), f"{declaration.name}: a GA API version, please"


def sdk_api_version(distribution: str, module_path: str) -> str:
    """The API version a pinned SDK sends by default, read from its configuration module's
    source (importing azure.ai.ml takes seconds)."""
    [file] = [f for f in metadata.files(distribution) if f.as_posix() == module_path]
    [version] = set(re.findall(r'api_version[^=\n]*=\s*(?:kwargs\.pop\("api_version",\s*)?"(\d{4}-\d{2}-\d{2})"',
                               file.read_text()))
    return version


def test_azure_ml_and_stream_analytics_use_the_api_versions_the_pinned_sdks_send():
    ml_version = sdk_api_version("azure-ai-ml", "azure/ai/ml/_restclient/arm_ml_service/_configuration.py")
    asa_version = sdk_api_version("azure-mgmt-streamanalytics", "azure/mgmt/streamanalytics/_configuration.py")
    used = {(d.resource_type, d.api_version) for found in DECLARATIONS.values() for d in found if d.kind == "resource"}
    assert {v for t, v in used if t.startswith("Microsoft.MachineLearningServices/")} == {ml_version}
    assert {v for t, v in used if t.startswith("Microsoft.StreamAnalytics/")} == {asa_version}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_parameter_is_described_and_none_is_a_secret(path):
    text = path.read_text()
    assert "@secure" not in text and "administratorLoginPassword" not in text
    for param in declarations(path, "param").values():
        assert "@description(" in param.decorators, f"{path.name}: param {param.name} has no @description"
        assert not re.search(r"password|secret|connectionString|sasToken|accountKey|sharedKey", param.name,
                             re.I), param.name


@pytest.mark.parametrize("module", list(declarations(MAIN, "module").values()), ids=lambda m: m.name)
def test_modules_get_exactly_the_parameters_they_declare(module):
    path = MAIN.parent / module.header.strip("'")
    assert path.exists(), module.header
    declared = declarations(path, "param")
    passed = bicep.top_level_keys(module.field("params"))
    assert len(passed) == len(set(passed)), passed
    assert set(passed) <= set(declared), f"{module.name}: unknown {set(passed) - set(declared)}"
    required = {name for name, p in declared.items() if not p.value}
    assert required <= set(passed), f"{module.name}: missing {required - set(passed)}"
    # and every output main reads from it exists
    outputs = declarations(path, "output")
    used = set(re.findall(rf"\b{module.name}\.outputs\.(\w+)", MAIN.read_text()))
    assert used <= set(outputs), f"{module.name}: no output {used - set(outputs)}"


def _identity(principal: str) -> str:
    for hint, identity in (("host", "host"), ("cluster", "cluster"), ("asa", "asa"), ("sender", "sender")):
        if hint in principal.lower():
            return identity
    raise AssertionError(f"whose principal is {principal!r}?")


def template_role_assignments() -> set[tuple[str, str, str]]:
    """(identity, role name, scope type) of every role assignment in the templates."""
    by_id = {guid: name for name, guid in ROLES.items()}
    found = set()
    for path in FILES:
        variables = declarations(path, "var")
        resources = declarations(path, "resource")
        for assignment in resources.values():
            if assignment.resource_type != "Microsoft.Authorization/roleAssignments":
                continue
            definition = assignment.field("roleDefinitionId")
            definition = variables[definition].value if definition in variables else definition
            [guid] = bicep.GUID.findall(definition)
            assert guid in by_id, f"{path.name}: {assignment.name} assigns an unknown role {guid}"
            scope = resources[assignment.field("scope")].resource_type
            found.add((_identity(assignment.field("principalId")), by_id[guid], scope))
    return found


def documented_role_assignments() -> set[tuple[str, str, str]]:
    """(identity, role name, scope type) of every ``az role assignment create`` in docs/azure.md."""
    text = (ROOT / "docs" / "azure.md").read_text().replace("\\\n", " ")
    found = set()
    for line in text.splitlines():
        if not line.startswith("az role assignment create"):
            continue
        args = shlex.split(line)
        options = dict(zip(args[4::2], args[5::2]))
        assignee = options.get("--assignee-object-id") or options.get("--assignee")
        if assignee == "<operator>":
            continue  # whoever deploys: Contributor is needed to run the template at all
        found.add((DOC_IDENTITIES[assignee], options["--role"], DOC_SCOPES[options["--scope"]]))
    return found


def test_every_role_of_the_docs_commands_is_assigned_by_the_template_and_no_other():
    documented = documented_role_assignments()
    assert len(documented) >= 8  # the commands were found at all
    assert template_role_assignments() == documented


def test_cluster_scales_from_zero_with_its_own_identity():
    ml = DEPLOY / "modules" / "ml.bicep"
    cluster = resource(ml, "cluster")
    assert cluster.resource_type == "Microsoft.MachineLearningServices/workspaces/computes"
    assert "type: 'SystemAssigned'" in cluster.field("identity")
    scale = cluster.field("scaleSettings")
    assert "minNodeCount: 0" in scale and "maxNodeCount: clusterMaxNodes" in scale
    assert "nodeIdleTimeBeforeScaleDown: 'PT10M'" in scale
    # the same cluster `bscore aml provision` describes by default (resources/azureml_provision.py)
    from resources.azureml_provision import ClusterSpec

    spec = ClusterSpec()
    assert spec.min_nodes == 0 and spec.idle_seconds == 10 * 60
    assert declarations(MAIN, "param")["clusterVmSize"].value == f"'{spec.vm_size}'"
    assert declarations(MAIN, "param")["clusterMaxNodes"].value == str(spec.max_nodes)
    assert re.search(r"clusterName = '\$\{name\}-cpu'", ml.read_text()) and spec.name == "bscore-cpu"


def test_databases_sign_in_with_entra_only():
    sql = DEPLOY / "modules" / "sql.bicep"
    server = resource(sql, "server").field("administrators")
    assert "azureADOnlyAuthentication: true" in server and "administratorType: 'ActiveDirectory'" in server
    auth = resource(sql, "dagsterServer").field("authConfig")
    assert "passwordAuth: 'Disabled'" in auth and "activeDirectoryAuth: 'Enabled'" in auth
    # the Dagster host is the Entra administrator of its own instance's server, as itself
    admin = resource(sql, "dagsterAdmin")
    assert admin.field("name") == "hostPrincipalId" and admin.field("principalName") == "hostIdentityName"
    assert "disableLocalAuth: true" in resource(DEPLOY / "modules" / "events.bicep", "namespace").value
    assert "allowSharedKeyAccess: false" in resource(DEPLOY / "modules" / "storage.bicep", "account").value


def _literals(value) -> set[tuple[str, str]]:
    """(key, string) leaves of a JSON body."""
    if isinstance(value, dict):
        return {(k, v) for k, v in value.items() if isinstance(v, str)} | {
            pair for v in value.values() for pair in _literals(v)}
    if isinstance(value, list):
        return {pair for v in value for pair in _literals(v)}
    return set()


def test_stream_analytics_job_is_the_one_bscore_asa_provision_sends():
    spec = asa.AsaJobSpec(subscription_id="SPEC", resource_group="SPEC", job_name="SPEC", location="SPEC",
                          streaming_units=3, window_seconds=5, allowed_lateness_minutes=5,
                          eventhub_namespace="SPEC", eventhub_name="SPEC", consumer_group="bscore-asa",
                          sql_server="SPEC", sql_database="SPEC", storage_account="SPEC", container="SPEC")
    body = asa.job_body(asa.streaming_job(spec))
    expected = {(k, v) for k, v in _literals(body) if v != "SPEC" and not v.isdigit() and k != "query"}
    events = DEPLOY / "modules" / "events.bicep"
    job = resource(events, "asaJob")
    variables = {name: d.value.strip("'") for name, d in declarations(events, "var").items()
                 if re.fullmatch(r"'[^'$]*'", d.value)}
    in_template = set()
    for key, literal in re.findall(r"(\w+):\s*('[^'\n]*'|\w+)\s*$", job.value, re.M):
        in_template.add((key, variables.get(literal, literal.strip("'"))))
    assert expected, "the SDK body has no constants?"
    missing = expected - in_template
    assert not missing, f"the template's job differs from resources/asa.py's: {sorted(missing)}"
    assert job.field("query") == "aggregationQuery"


def test_host_runs_webserver_and_daemon_of_the_workspace_with_one_replica():
    app = resource(DEPLOY / "modules" / "host.bicep", "app")
    assert re.search(r"command: \[\s*'dagster-webserver'\s*\]", app.value)
    assert re.search(r"command: \[\s*'dagster-daemon'\s*\]\s*args: \[\s*'run'", app.value)
    assert app.value.count("'workspace.yaml'") == 2 and (ROOT / "workspace.yaml").exists()
    scale = app.field("scale")
    assert "minReplicas: 1" in scale and "maxReplicas: 1" in scale  # one daemon, never two
    assert "external: webserverExternal" in app.value
    assert declarations(MAIN, "param")["webserverExternal"].value == "false"


def host_settings() -> dict[str, str]:
    """The host's environment variables in host.bicep: name -> Bicep expression."""
    settings = declarations(DEPLOY / "modules" / "host.bicep", "var")["settings"].value
    return dict(re.findall(r"\{ name: '(\w+)', value: (.+?) \}", settings))


def test_every_host_variable_is_documented():
    documented = (ROOT / "docs" / "azure.md").read_text() + (ROOT / "docs" / "configuration.md").read_text()
    instance = (DEPLOY / "dagster.yaml").read_text()
    settings = host_settings()
    assert len(settings) > 20
    missing = [name for name in settings if f"`{name}`" not in documented and f"env: {name}" not in instance]
    assert not missing, f"host.bicep sets variables the docs do not name: {missing}"
    # dagster.yaml's variables are all set
    assert set(re.findall(r"env: (\w+)", instance)) <= set(settings)
