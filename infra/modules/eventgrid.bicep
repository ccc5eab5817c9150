// Push events from a registry to the app: a webhook subscription to https://<app>/api/events on the
// registry's Event Grid system topic. The route is anonymous to the Functions host; the app checks
// the secret, which Event Grid sends as a static delivery header marked secret (the header named by
// IMPORT_WEBHOOK_SECRET_HEADER, importcore/triggers/auth.py), on the validation handshake as on every
// delivery. A header, unlike ?token= in the URL, stays out of request logs and telemetry.
//
// A source has at most one system topic (the portal's Events blade makes one): pass its name in
// existingTopicName, and this module only adds the subscription to it. With none, it creates one.
//
// Deployed by infra/events.bicep, scoped to the topic's resource group, once the app answers: Event
// Grid runs the validation handshake while the subscription is being created (docs/deploy.md).

@description('Resource ID of the registry whose pushes trigger imports.')
param registryId string

@description('Name of the registry\'s existing system topic in this resource group; "" = create one.')
param existingTopicName string = ''

@description('Host name of the Function App.')
param appHostName string

@secure()
@description('IMPORT_EVENTGRID_SECRET, sent in the secretHeader delivery header.')
param eventGridSecret string

@description('IMPORT_WEBHOOK_SECRET_HEADER: the header the app reads the secret from.')
param secretHeader string

@description('Event types to deliver.')
param eventTypes array = [ 'Microsoft.ContainerRegistry.ImagePushed', 'Microsoft.ContainerRegistry.ChartPushed' ]

param tags object = {}

var registryParts = split(registryId, '/')
var createTopic = empty(existingTopicName)
var topicName = createTopic ? 'egst-${last(registryParts)}' : existingTopicName
var subscriptionName = 'to-${take(replace(appHostName, '.', '-'), 50)}'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: last(registryParts)
  scope: resourceGroup(registryParts[2], registryParts[4])
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createTopic) {
  name: topicName
  location: registry.location
  tags: tags
  properties: {
    source: registry.id
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

// Named by its full child name rather than with `parent`, so it works on either topic: the one
// created above or the existing one.
resource eventSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  name: '${topicName}/${subscriptionName}'
  dependsOn: [ topic ]
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${appHostName}/api/events'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
        deliveryAttributeMappings: [
          {
            name: secretHeader
            type: 'Static'
            properties: {
              value: eventGridSecret
              isSecret: true
            }
          }
        ]
      }
    }
    filter: { includedEventTypes: eventTypes }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}

output topicName string = topicName
output subscriptionName string = subscriptionName
