from tests.test_app_e2e import body_with
def test_probe(app_host_factory):
    app = app_host_factory(**{"AzureWebJobs.run_import.Disabled": "true"})
    for uri in ["nonexistent.invalid", "localhost:5000", "[::1]:5000"]:
        r = app.post_import(body_with(source_registryUri=uri))
        print(uri, r.status_code, r.text)
    r = app.post_import(body_with(source_registryUri=None, source_sourceImage="team/app:1.0"))
    print("dockerhub", r.status_code, r.text)
