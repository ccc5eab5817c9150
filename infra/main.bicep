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
//     Key Vault and the target registry);
//   - optionally App Service Authentication (Microsoft Entra ID) for callers with bearer tokens.
// An Event Grid subscription from a registry to /api/events is a second deployment, events.bicep,
// made once the app answers (docs/deploy.md).
//
// No Bicep compiler runs in this repository's tests: they parse every .bicep file and check rules
// (tests/test_infra.py). Build it once before the first deployment: az bicep build -f infra/main.bicep

targetScope = 'resourceGroup'

// ---- names and placement -----------------------------------------------------------------------

@description('Azure region for everything created here (the registries may live elsewhere).')
param location string = resourceGroup().location

@description('Short base name: 3-20 lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen. Resource names are derived from it plus a hash of the resource group.')
@minLength(3)
@maxLength(20)
param baseName string = 'regimport'

@description('Goes into that hash: a new value gives every resource a new name. For a redeployment into a group of the same name while the soft-deleted Key Vault of the old one still holds its name (or use keyVaultCreateMode=recover).')
@maxLength(16)
param nameSalt string = ''

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

@description('Put the app in a VNet: integration subnet with a NAT gateway, storage and Key Vault reached through private endpoints (storage\'s firewall lets only trusted Azure services through its public endpoint, Key Vault has none).')
param enableVnet bool = false

param vnetAddressPrefix string = '10.60.0.0/16'

@description('Integration subnet (delegated to Microsoft.App/environments); /24 or larger recommended for scale-out.')
param integrationSubnetPrefix string = '10.60.0.0/24'

param privateEndpointSubnetPrefix string = '10.60.1.0/24'

@description('With enableVnet: also a private endpoint for the target registry (Premium SKU required), and the registry private DNS zone.')
param targetRegistryPrivateEndpoint bool = false

@description('With enableVnet: create and link the registry private DNS zone (privatelink.azurecr.io) although the target gets no private endpoint, for source registries you give private endpoints in this VNet.')
param registryPrivateDnsZone bool = false

@description('With enableVnet: public IPv4 addresses or CIDR ranges allowed through the storage firewall besides trusted Azure services (e.g. a build agent that writes the package blob itself).')
param storageAllowedIpRanges array = []

// ---- hardening ---------------------------------------------------------------------------------

@description('default, or recover: take back the soft-deleted Key Vault of the same name (after az group delete; purge protection keeps it for 30 days) with its secrets.')
@allowed([ 'default', 'recover' ])
param keyVaultCreateMode string = 'default'

@description('Application Insights accepts telemetry only with an Entra token (local auth off): the host authenticates as the app identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, Monitoring Metrics Publisher).')
param appInsightsDisableLocalAuth bool = false

// ---- API authentication (optional) ---------------------------------------------------------------

@description('Client (application) id of the Entra app registration that callers get tokens for (scope api://<client-id>/.default); turns on App Service Authentication with Microsoft Entra ID. "" = not configured.')
param apiAuthClientId string = ''

@description('Audience accepted besides the client id itself; "" = api://<apiAuthClientId>.')
param apiAuthAudience string = ''

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

@description('IMPORT_QUEUE: the import queue (the host adds "<name>-poison"): 3-56 lowercase letters, digits and single hyphens, starting and ending with a letter or digit.')
@minLength(3)
@maxLength(56)
param queueName string = 'imports'

@description('IMPORT_JOBS_TABLE: the job records table: 3-63 letters and digits, starting with a letter.')
@minLength(3)
@maxLength(63)
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

@description('IMPORT_SYNC_TIMER_SCHEDULE: NCRONTAB of the sync timer, how often rules with sync are looked at (each runs on its own sync.schedule; docs/sync.md).')
param syncTimerSchedule string = '0 */1 * * * *'

@description('IMPORT_SYNC_MIN_REMAINING: a sync pass enqueues no more imports from a source whose RateLimit-Remaining would fall under this.')
@minValue(0)
param syncMinRemaining int = 10

@description('IMPORT_VERIFY_KEYS: JSON object of the cosign public keys imports may name in verify.keyRefs, {"name": "<PEM>" or "<path of a PEM file in the package>"}; "" = none (README "Signatures and SBOMs"). Public keys, not secrets; may be a Key Vault reference.')
param verifyKeys string = ''

// ---- scale -------------------------------------------------------------------------------------

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@allowed([ 512, 2048, 4096 ])
param instanceMemoryMB int = 2048

// ================================================================================================

// ---- input checks ------------------------------------------------------------------------------
// Bicep has no regular expressions: each name is checked character by character against what its
// resource accepts, and a bad one stops the deployment through fail() before anything is created
// (every derived name goes through the checked value), instead of failing halfway with an error
// about some resource's name.
var baseNameOk = empty(filter(range(0, length(baseName)), i => !contains('abcdefghijklmnopqrstuvwxyz0123456789-', substring(baseName, i, 1)))) && contains('abcdefghijklmnopqrstuvwxyz', substring(baseName, 0, 1)) && !endsWith(baseName, '-')
var queueNameOk = empty(filter(range(0, length(queueName)), i => !contains('abcdefghijklmnopqrstuvwxyz0123456789-', substring(queueName, i, 1)))) && !startsWith(queueName, '-') && !endsWith(queueName, '-') && !contains(queueName, '--')
var jobsTableNameOk = empty(filter(range(0, length(jobsTableName)), i => !contains('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', substring(jobsTableName, i, 1)))) && !contains('0123456789', substring(jobsTableName, 0, 1))

var checkedBaseName = baseNameOk ? baseName : fail('baseName must be lowercase letters, digits and hyphens, start with a letter and not end with a hyphen (it becomes part of the site, storage and Key Vault names).')
var checkedQueueName = queueNameOk ? queueName : fail('queueName must be lowercase letters, digits and single hyphens, starting and ending with a letter or digit (an Azure Storage queue name).')
var checkedJobsTableName = jobsTableNameOk ? jobsTableName : fail('jobsTableName must be letters and digits, starting with a letter (an Azure Storage table name).')

// Webhook secrets: known senders only, each 16+ characters (the app refuses a shorter one at start).
var unknownSenders = filter(objectKeys(webhookSecrets), name => !contains([ 'github', 'harbor', 'acr', 'distribution', 'dockerhub', 'eventgrid' ], name))
var shortSecrets = filter(items(webhookSecrets), item => !empty(item.value) && length(item.value) < 16)
var checkedWebhookSecrets = !empty(unknownSenders) ? fail('webhookSecrets: unknown sender(s) ${join(unknownSenders, ', ')}; expected github, harbor, acr, distribution, dockerhub, eventgrid.') : (!empty(shortSecrets) ? fail('webhookSecrets: the secret of ${join(map(shortSecrets, item => item.key), ', ')} is shorter than 16 characters.') : webhookSecrets)

var suffix = empty(nameSalt) ? uniqueString(resourceGroup().id, checkedBaseName) : uniqueString(resourceGroup().id, checkedBaseName, nameSalt)
var compactBase = toLower(replace(checkedBaseName, '-', ''))
var appName = '${checkedBaseName}-${suffix}'
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
var webhookVaultSecrets = toObject(items(checkedWebhookSecrets), item => webhookSecretNames[item.key], item => item.value)
var vaultSecrets = union({ 'import-credential-key': credentialKey }, webhookVaultSecrets)
// A reference only where a secret was given: an unresolvable reference would reach the app as its
// literal text, and a secret that anyone can spell is worse than none (the app refuses a provider
// whose secret is empty).
var kv = '@Microsoft.KeyVault(VaultName=${vaultName};SecretName='
var webhookSecretRefs = toObject(items(webhookSecretNames), item => item.key, item => (contains(checkedWebhookSecrets, item.key) && !empty(checkedWebhookSecrets[item.key])) ? '${kv}${item.value})' : '')

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
  params: {
    location: location
    name: appName
    disableLocalAuth: appInsightsDisableLocalAuth
    metricsPublisherPrincipalId: appInsightsDisableLocalAuth ? principalId : ''
    tags: tags
  }
}

module network 'modules/network.bicep' = if (enableVnet) {
  name: 'network'
  params: {
    location: location
    name: appName
    addressPrefix: vnetAddressPrefix
    integrationSubnetPrefix: integrationSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    registryDnsZone: targetRegistryPrivateEndpoint || registryPrivateDnsZone
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    name: storageName
    queueName: checkedQueueName
    jobsTableName: checkedJobsTableName
    deploymentContainerName: deploymentContainerName
    restrictNetwork: enableVnet
    allowedIpRanges: storageAllowedIpRanges
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
  IMPORT_REGISTRY_NAMES: '' // the ARM route knows the target's ACR name; list name=login.server pairs for others
  IMPORT_ARM_RETRY_AFTER_SECONDS: '10'
  IMPORT_ARM_ALLOW_ANONYMOUS: 'false' // the ARM route needs App Service Authentication (Entra ID) to be on
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
  IMPORT_SYNC_TIMER_SCHEDULE: syncTimerSchedule
  IMPORT_SYNC_MIN_REMAINING: string(syncMinRemaining)
  IMPORT_VERIFY_KEYS: verifyKeys
  IMPORT_PLAIN_HTTP_REGISTRIES: '' // never in Azure: registries are spoken to over https
  IMPORT_ALLOWED_PRIVATE_HOSTS: allowedPrivateHosts
  IMPORT_PUBLIC_REGISTRIES: publicRegistries
  REGISTRY_AUTH_FILE: '' // no docker config.json in Azure: ACR by identity, others per request
  IMPORT_MAX_MANIFESTS: string(maxManifests)
  IMPORT_MAX_LAYER_BYTES_PUBLIC: string(maxLayerBytesPublic)
  IMPORT_BLOB_CONCURRENCY: string(blobConcurrency)
  IMPORT_QUEUE: checkedQueueName
  IMPORT_JOBS_TABLE: checkedJobsTableName
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

// Read by the Functions host, not by the app's code: with local auth off, the host sends its
// telemetry with an Entra token of the app identity.
var hostSettings = appInsightsDisableLocalAuth ? {
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: userAssigned ? 'ClientId=${identity.properties.clientId};Authorization=AAD' : 'Authorization=AAD'
} : {}

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
    apiAuthClientId: apiAuthClientId
    apiAuthAudiences: empty(apiAuthClientId) ? [] : [ empty(apiAuthAudience) ? 'api://${apiAuthClientId}' : apiAuthAudience ]
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
    createMode: keyVaultCreateMode
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

// ---- app settings, last --------------------------------------------------------------------------

// Writing them (re)starts the host. Before that: the storage roles (the host's own storage), the
// Key Vault secrets and the identity's role on the vault (the Key Vault references), AcrPush on the
// target, and with the VNet the private endpoints with their DNS records: a host that starts
// against storage it cannot reach yet, or a Key Vault reference that cannot resolve at start, stays
// broken until the next restart.
module settings 'modules/appsettings.bicep' = {
  name: 'appsettings'
  params: { siteName: app.outputs.name, appSettings: union(appSettings, hostSettings) }
  dependsOn: [
    vault
    storageRoles
    targetPush
    storagePrivateEndpoints
    vaultPrivateEndpoint
    registryPrivateEndpoint
  ]
}

// ---- outputs --------------------------------------------------------------------------------------

output functionAppName string = app.outputs.name
output functionAppUrl string = 'https://${app.outputs.defaultHostName}'
output principalId string = principalId
output identityClientId string = userAssigned ? identity.properties.clientId : ''
output storageAccountName string = storage.outputs.name
output keyVaultName string = vault.outputs.name
output targetLoginServer string = targetRegistry.properties.loginServer
