// Registry importer (the self-hosted `az acr import`) on Azure Functions Flex Consumption.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p @infra/main.parameters.json
//
// What it builds (docs/deploy.md walks through it):
//   - a managed identity the app runs as (user-assigned by default), with
//       AcrPush on the target registry, AcrPull (+ Reader, for sources given by resource ID) on
//       each listed source registry, Storage Queue/Table Data Contributor and Storage Blob Data
//       Owner on its storage account, Key Vault Secrets User on its vault;
//   - a storage account with shared keys off: the host and the app connect by identity
//     (AzureWebJobsStorage__accountName), the import queue, its poison queue, the job table and
//     the Flex deployment container are created here;
//   - Key Vault holding IMPORT_CREDENTIAL_KEY, read through a Key Vault reference app setting;
//   - Log Analytics + Application Insights;
//   - the Function App (Flex Consumption, Linux, Python 3.11) with every app setting the code reads;
//   - optionally a VNet (integration subnet + NAT gateway, private endpoints and DNS for storage,
//     Key Vault and the target registry), and an Event Grid subscription from a registry to /api/events.

targetScope = 'resourceGroup'

// ---- names and placement -----------------------------------------------------------------------

@description('Azure region for everything created here (the registries may live elsewhere).')
param location string = resourceGroup().location

@description('Short base name; resource names are derived from it plus a hash of the resource group.')
@minLength(3)
@maxLength(20)
param baseName string = 'regimport'

@description('Tags for every resource.')
param tags object = {}

// ---- registries --------------------------------------------------------------------------------

@description('Resource ID of the registry images are imported into (gets AcrPush). Its login server becomes IMPORT_TARGET_REGISTRY.')
param targetRegistryId string

@description('Resource IDs of ACR registries to import from with the identity (each gets AcrPull).')
param sourceRegistryIds array = []

@description('Also grant Reader on each source registry, so it can be given by resource ID (source.resourceId / --registry): ARM needs registries/read to return its loginServer.')
param grantReaderOnSources bool = true

// ---- identity ----------------------------------------------------------------------------------

@description('UserAssigned: a managed identity created here (survives re-creating the app; its client id is IMPORT_MANAGED_IDENTITY_CLIENT_ID). SystemAssigned: the app\'s own identity.')
@allowed([ 'UserAssigned', 'SystemAssigned' ])
param identityType string = 'UserAssigned'

// ---- secrets -----------------------------------------------------------------------------------

@secure()
@description('IMPORT_CREDENTIAL_KEY, a Fernet key (urlsafe base64 of 32 random bytes). Required on the first deployment; leave empty later to keep the stored one (changing it makes queued jobs\' sealed credentials unreadable).')
param credentialKey string = ''

@secure()
@description('Webhook secrets, provider -> secret (16+ characters): github, harbor, acr, distribution, dockerhub, eventgrid. Each given one is stored in Key Vault and set as IMPORT_WEBHOOK_SECRET_<PROVIDER> (IMPORT_EVENTGRID_SECRET) through a Key Vault reference; a provider left out is refused by the app. Pass them on every deployment (e.g. a parameters file with Key Vault references).')
param webhookSecrets object = {}

@description('IMPORT_WEBHOOK_SECRET_HEADER: header the acr/distribution webhooks carry their secret in.')
param webhookSecretHeader string = 'X-Webhook-Secret'

// ---- network -----------------------------------------------------------------------------------

@description('Put the app in a VNet: integration subnet with a NAT gateway, storage and Key Vault reachable only through private endpoints.')
param enableVnet bool = false

param vnetAddressPrefix string = '10.60.0.0/16'

@description('Integration subnet (delegated to Microsoft.App/environments); /24 or larger recommended for scale-out.')
param integrationSubnetPrefix string = '10.60.0.0/24'

param privateEndpointSubnetPrefix string = '10.60.1.0/24'

@description('With enableVnet: also a private endpoint for the target registry (Premium SKU required).')
param targetRegistryPrivateEndpoint bool = false

// ---- Event Grid (optional) ---------------------------------------------------------------------

@description('Resource ID of a registry whose pushes should trigger imports via Event Grid; "" = none. Needs webhookSecrets.eventgrid (sent as ?token=). Deploy the app code first (the subscription handshake calls /api/events).')
param eventGridRegistryId string = ''

// ---- importer behaviour (see the README's settings table) ----------------------------------------

@description('IMPORT_PUBLIC_REGISTRIES: registries whose layers are capped by maxLayerBytesPublic.')
param publicRegistries string = 'docker.io,mcr.microsoft.com,ghcr.io,quay.io,gcr.io,registry.k8s.io,public.ecr.aws,nvcr.io,registry.gitlab.com'

@description('IMPORT_ALLOWED_PRIVATE_HOSTS: host[:port] or CIDR list of sources allowed although they resolve to private addresses (e.g. source registries behind private endpoints).')
param allowedPrivateHosts string = ''

@description('IMPORT_MAX_MANIFESTS: most manifests one import may copy.')
param maxManifests int = 50

@description('IMPORT_MAX_LAYER_BYTES_PUBLIC: largest layer accepted from a public registry (bytes).')
param maxLayerBytesPublic int = 2147483648

@description('IMPORT_BLOB_CONCURRENCY: blobs copied in parallel per import.')
param blobConcurrency int = 4

@description('IMPORT_QUEUE: the import queue (the host adds "<name>-poison").')
param queueName string = 'imports'

@description('IMPORT_JOBS_TABLE: the job records table.')
param jobsTableName string = 'importjobs'

@description('IMPORT_TIMER_SCHEDULE: NCRONTAB of the sweeper (retries, abandoned uploads, expiry).')
param timerSchedule string = '0 */1 * * * *'

@description('IMPORT_MAX_ATTEMPTS: attempts per job before it fails for good.')
param maxAttempts int = 5

@description('IMPORT_LEASE_SECONDS: how long a running job is considered alive without progress.')
param leaseSeconds int = 600

@description('IMPORT_JOB_TTL_DAYS: days finished job records are kept.')
param jobTtlDays int = 7

@description('IMPORT_RETRY_BASE_SECONDS: first backoff of a retryable failure (doubles per attempt).')
param retryBaseSeconds int = 30

@description('IMPORT_DEDUPE_WINDOW_SECONDS: the same event within this many seconds imports once (0 = off).')
param dedupeWindowSeconds int = 600

@description('IMPORT_MIRROR_RULES_FILE: path (relative to the app root, shipped in the package) of the mirror rules JSON for webhook/Event Grid pushes; "" = none (docs/events.md).')
param mirrorRulesFile string = ''

@description('IMPORT_VERIFY_KEYS: JSON object of the cosign public keys imports may name in verify.keyRefs, {"name": "<PEM>" or "<path of a PEM file in the package>"}; "" = none (README "Signatures and SBOMs"). Public keys, not secrets; may be a Key Vault reference.')
param verifyKeys string = ''

// ---- scale -------------------------------------------------------------------------------------

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([ 512, 2048, 4096 ])
param instanceMemoryMB int = 2048

// ================================================================================================

var suffix = uniqueString(resourceGroup().id, baseName)
var compactBase = toLower(replace(replace(baseName, '-', ''), '_', ''))
var appName = '${baseName}-${suffix}'
var storageName = take('st${take(compactBase, 9)}${suffix}', 24)
var vaultName = take('kv-${take(compactBase, 8)}-${suffix}', 24)
var deploymentContainerName = 'app-package'
var userAssigned = identityType == 'UserAssigned'

// Key Vault secret names of the app settings that hold secrets.
var webhookSecretNames = {
  github: 'import-webhook-secret-github'
  harbor: 'import-webhook-secret-harbor'
  acr: 'import-webhook-secret-acr'
  distribution: 'import-webhook-secret-distribution'
  dockerhub: 'import-webhook-secret-dockerhub'
  eventgrid: 'import-eventgrid-secret'
}
var webhookVaultSecrets = toObject(items(webhookSecrets), item => webhookSecretNames[item.key], item => item.value)
var vaultSecrets = union({ 'import-credential-key': credentialKey }, webhookVaultSecrets)
// A reference only where a secret was given: an unresolvable reference would reach the app as its
// literal text, and a secret that anyone can spell is worse than none (the app refuses a provider
// whose secret is empty).
var kv = '@Microsoft.KeyVault(VaultName=${vaultName};SecretName='
var webhookSecretRefs = toObject(items(webhookSecretNames), item => item.key, item => (contains(webhookSecrets, item.key) && !empty(webhookSecrets[item.key])) ? '${kv}${item.value})' : '')

var acrPush = '8311e382-0749-4cb8-b61a-304f252e45ec'
var acrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

// /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ContainerRegistry/registries/<name>
var targetParts = split(targetRegistryId, '/')

resource targetRegistry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: last(targetParts)
  scope: resourceGroup(targetParts[2], targetParts[4])
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (userAssigned) {
  name: 'id-${appName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: { location: location, name: appName, tags: tags }
}

module network 'modules/network.bicep' = if (enableVnet) {
  name: 'network'
  params: {
    location: location
    name: appName
    addressPrefix: vnetAddressPrefix
    integrationSubnetPrefix: integrationSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    name: storageName
    queueName: queueName
    jobsTableName: jobsTableName
    deploymentContainerName: deploymentContainerName
    privateOnly: enableVnet
    tags: tags
  }
}

// ---- app settings: every setting importcore/ and function_app.py read, and nothing else ----------
// tests/test_settings_consistency.py compares the names between the markers with the code and
// with local.settings.json.example; keep one name per line.
// app-settings:begin
var appSettings = union({
  // Identity-based host storage (no connection string: shared keys are off).
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  IMPORT_TARGET_REGISTRY: targetRegistry.properties.loginServer
  IMPORT_MANAGED_IDENTITY_CLIENT_ID: userAssigned ? identity.properties.clientId : ''
  IMPORT_ARM_ENDPOINT: environment().resourceManager
  IMPORT_CREDENTIAL_KEY: '${kv}import-credential-key)' // fails closed until the secret exists
  IMPORT_WEBHOOK_SECRET_GITHUB: webhookSecretRefs.github
  IMPORT_WEBHOOK_SECRET_HARBOR: webhookSecretRefs.harbor
  IMPORT_WEBHOOK_SECRET_ACR: webhookSecretRefs.acr
  IMPORT_WEBHOOK_SECRET_DISTRIBUTION: webhookSecretRefs.distribution
  IMPORT_WEBHOOK_SECRET_DOCKERHUB: webhookSecretRefs.dockerhub
  IMPORT_EVENTGRID_SECRET: webhookSecretRefs.eventgrid
  IMPORT_WEBHOOK_SECRET_HEADER: webhookSecretHeader
  IMPORT_DEDUPE_WINDOW_SECONDS: string(dedupeWindowSeconds)
  IMPORT_MIRROR_RULES_FILE: mirrorRulesFile
  IMPORT_VERIFY_KEYS: verifyKeys
  IMPORT_PLAIN_HTTP_REGISTRIES: '' // never in Azure: registries are spoken to over https
  IMPORT_ALLOWED_PRIVATE_HOSTS: allowedPrivateHosts
  IMPORT_PUBLIC_REGISTRIES: publicRegistries
  REGISTRY_AUTH_FILE: '' // no docker config.json in Azure: ACR by identity, others per request
  IMPORT_MAX_MANIFESTS: string(maxManifests)
  IMPORT_MAX_LAYER_BYTES_PUBLIC: string(maxLayerBytesPublic)
  IMPORT_BLOB_CONCURRENCY: string(blobConcurrency)
  IMPORT_QUEUE: queueName
  IMPORT_JOBS_TABLE: jobsTableName
  IMPORT_TIMER_SCHEDULE: timerSchedule
  IMPORT_MAX_ATTEMPTS: string(maxAttempts)
  IMPORT_LEASE_SECONDS: string(leaseSeconds)
  IMPORT_JOB_TTL_DAYS: string(jobTtlDays)
  IMPORT_RETRY_BASE_SECONDS: string(retryBaseSeconds)
  IMPORT_FUNCTION_TIMEOUT_SECONDS: '600' // = host.json functionTimeout "00:10:00": change both together
  IMPORT_DEADLINE_MARGIN_SECONDS: '60' // no blob transfer starts in the invocation's last minute
}, userAssigned ? {
  // A user-assigned identity must be named for the host's storage connection.
  AzureWebJobsStorage__clientId: identity.properties.clientId
} : {})
// app-settings:end

module app 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    name: appName
    identityType: identityType
    identityId: userAssigned ? identity.id : ''
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    subnetId: enableVnet ? network.outputs.integrationSubnetId : ''
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    tags: tags
  }
}

var principalId = userAssigned ? identity.properties.principalId : app.outputs.principalId

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    name: vaultName
    readerPrincipalId: principalId
    secrets: vaultSecrets
    privateOnly: enableVnet
    tags: tags
  }
}

module storageRoles 'modules/storageRoles.bicep' = {
  name: 'storage-roles'
  params: { storageAccountName: storage.outputs.name, principalId: principalId }
}

// ---- registry roles (modules scoped to each registry's resource group) ---------------------------

module targetPush 'modules/registryRole.bicep' = {
  name: 'acrpush-target'
  scope: resourceGroup(targetParts[2], targetParts[4])
  params: { registryName: last(targetParts), principalId: principalId, roleDefinitionId: acrPush }
}

module sourcePull 'modules/registryRole.bicep' = [for (id, i) in sourceRegistryIds: {
  name: 'acrpull-source-${i}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: { registryName: last(split(id, '/')), principalId: principalId, roleDefinitionId: acrPull }
}]

module sourceReader 'modules/registryRole.bicep' = [for (id, i) in sourceRegistryIds: if (grantReaderOnSources) {
  name: 'reader-source-${i}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: { registryName: last(split(id, '/')), principalId: principalId, roleDefinitionId: reader }
}]

module settings 'modules/appsettings.bicep' = {
  name: 'appsettings'
  params: { siteName: app.outputs.name, appSettings: appSettings }
  dependsOn: [ vault, storageRoles, targetPush ]
}

// ---- private endpoints ----------------------------------------------------------------------------

// (a for-expression needs values known when the deployment starts: loop over names, look zones up inside)
var storageGroups = enableVnet ? [ 'blob', 'queue', 'table' ] : []

module storagePrivateEndpoints 'modules/privateEndpoint.bicep' = [for groupId in storageGroups: {
  name: 'pe-storage-${groupId}'
  params: {
    location: location
    name: 'pe-${storageName}-${groupId}'
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: storage.outputs.id
    groupId: groupId
    dnsZoneId: network.outputs.zoneIds[groupId]
    tags: tags
  }
}]

module vaultPrivateEndpoint 'modules/privateEndpoint.bicep' = if (enableVnet) {
  name: 'pe-vault'
  params: {
    location: location
    name: 'pe-${vaultName}'
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: vault.outputs.id
    groupId: 'vault'
    dnsZoneId: network.outputs.zoneIds.vault
    tags: tags
  }
}

module registryPrivateEndpoint 'modules/privateEndpoint.bicep' = if (enableVnet && targetRegistryPrivateEndpoint) {
  name: 'pe-target-registry'
  params: {
    location: location
    name: 'pe-${last(targetParts)}'
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: targetRegistryId
    groupId: 'registry'
    dnsZoneId: network.outputs.zoneIds.registry
    tags: tags
  }
}

// ---- Event Grid ---------------------------------------------------------------------------------

// (parts of the target's ID when unset, so the scope expression stays valid while skipped)
var eventGridParts = split(empty(eventGridRegistryId) ? targetRegistryId : eventGridRegistryId, '/')

module events 'modules/eventgrid.bicep' = if (!empty(eventGridRegistryId)) {
  name: 'eventgrid'
  scope: resourceGroup(eventGridParts[2], eventGridParts[4])
  dependsOn: [ settings ]
  params: {
    registryName: last(eventGridParts)
    appHostName: app.outputs.defaultHostName
    eventGridSecret: contains(webhookSecrets, 'eventgrid') ? webhookSecrets.eventgrid : ''
    tags: tags
  }
}

// ---- outputs --------------------------------------------------------------------------------------

output functionAppName string = app.outputs.name
output functionAppUrl string = 'https://${app.outputs.defaultHostName}'
output principalId string = principalId
output identityClientId string = userAssigned ? identity.properties.clientId : ''
output storageAccountName string = storage.outputs.name
output keyVaultName string = vault.outputs.name
output targetLoginServer string = targetRegistry.properties.loginServer
