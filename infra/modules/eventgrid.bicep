// Optional: push events from a registry to the app. An Event Grid system topic on the registry and
// a webhook subscription to https://<app>/api/events?token=<IMPORT_EVENTGRID_SECRET>. The route is
// anonymous to the Functions host; the app checks the token (importcore/triggers/auth.py).
// Scoped to the registry's resource group by main.bicep. Event Grid runs the validation handshake
// when the subscription is created, so the app's code must already be deployed: see docs/deploy.md.

@description('Name of the registry whose pushes trigger imports.')
param registryName string

@description('Host name of the Function App.')
param appHostName string

@secure()
@description('IMPORT_EVENTGRID_SECRET, sent as ?token= (importcore/triggers/auth.py).')
param eventGridSecret string

@description('Event types to deliver.')
param eventTypes array = [ 'Microsoft.ContainerRegistry.ImagePushed', 'Microsoft.ContainerRegistry.ChartPushed' ]

param tags object = {}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'egst-${registryName}'
  location: registry.location
  tags: tags
  properties: {
    source: registry.id
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'to-${take(replace(appHostName, '.', '-'), 50)}'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${appHostName}/api/events?token=${eventGridSecret}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: { includedEventTypes: eventTypes }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}
