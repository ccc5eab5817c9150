// Step 2 of an Event Grid setup: the subscription from a registry's pushes to the app's /api/events.
//
//   az deployment group create -g <app's rg> -f infra/events.bicep \
//     -p functionAppName=<app> eventGridRegistryId=<registry id> webhookSecrets=<same as main.bicep>
//
// A separate deployment, run once the app answers (docs/deploy.md, "Event Grid from a registry"):
// Event Grid sends its validation handshake while the subscription is being created, and gives up
// within seconds. Right after main.bicep writes the app settings, the app restarts: a cold Python
// instance that first has to resolve the Key Vault reference of IMPORT_EVENTGRID_SECRET may miss that
// window. Kept out of main.bicep, redeploying the app never re-runs the handshake either.

targetScope = 'resourceGroup'

@description('Name of the Function App main.bicep created (its functionAppName output), in this resource group.')
param functionAppName string

@description('Resource ID of the registry whose pushes should trigger imports via Event Grid.')
param eventGridRegistryId string

@description('Name of the registry\'s existing Event Grid system topic (a registry has at most one; the portal\'s Events blade creates one); "" = create one.')
param eventGridSystemTopicName string = ''

@description('Resource group of that existing system topic; "" = the registry\'s.')
param eventGridSystemTopicResourceGroup string = ''

@secure()
@description('The same webhookSecrets as main.bicep was deployed with; only eventgrid is used here.')
param webhookSecrets object

@description('IMPORT_WEBHOOK_SECRET_HEADER, as in main.bicep: the header Event Grid sends the secret in.')
param webhookSecretHeader string = 'X-Webhook-Secret'

@description('Tags for a system topic created here.')
param tags object = {}

// /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ContainerRegistry/registries/<name>
var registryParts = split(eventGridRegistryId, '/')
var registryIdOk = length(registryParts) == 9 && toLower(registryParts[6]) == 'microsoft.containerregistry' && toLower(registryParts[7]) == 'registries'
var registrySubscription = registryIdOk ? registryParts[2] : subscription().subscriptionId
var topicResourceGroup = !empty(eventGridSystemTopicResourceGroup) ? eventGridSystemTopicResourceGroup : (registryIdOk ? registryParts[4] : resourceGroup().name)

// The app refuses Event Grid deliveries without a secret of 16+ characters, so would the handshake:
// stop here, before anything is created, rather than leave a subscription that failed validation.
var eventGridSecret = webhookSecrets.?eventgrid ?? ''
var checkedSecret = length(eventGridSecret) >= 16 ? eventGridSecret : fail('webhookSecrets.eventgrid is missing or shorter than 16 characters: pass the webhookSecrets main.bicep was deployed with (its eventgrid secret is IMPORT_EVENTGRID_SECRET).')
var checkedRegistryId = registryIdOk ? eventGridRegistryId : fail('eventGridRegistryId is not a container registry resource ID (/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.ContainerRegistry/registries/<name>).')

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

module events 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: resourceGroup(registrySubscription, topicResourceGroup)
  params: {
    registryId: checkedRegistryId
    existingTopicName: eventGridSystemTopicName
    appHostName: app.properties.defaultHostName
    eventGridSecret: checkedSecret
    secretHeader: webhookSecretHeader
    tags: tags
  }
}

output topicName string = events.outputs.topicName
output subscriptionName string = events.outputs.subscriptionName
