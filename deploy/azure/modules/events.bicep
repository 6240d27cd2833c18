// Event Hubs (namespace, hub, a consumer group for the drain and one for Stream Analytics) and,
// with aggregation 'asa', the Stream Analytics job. The job's inputs, query and outputs are the
// ones `bscore asa provision` sends (resources/asa.py; tests/deploy/test_bicep.py compares them),
// and it signs in everywhere with its own identity.

@description('Name prefix.')
param name string

@description('Region.')
param location string

@description('Event Hubs namespace name (globally unique).')
param namespaceName string

@description('Partitions of the hub.')
param partitions int

@description('Throughput units to start with.')
param throughputUnits int

@description('Auto-inflate ceiling of throughput units.')
param maxThroughputUnits int

@description('Principal id of the Dagster host identity (drains the hub).')
param hostPrincipalId string

@description('Object ids allowed to send readings.')
param senderPrincipalIds array

@description('local or asa.')
param aggregation string

@description('With asa: the job query.')
param aggregationQuery string

@description('With asa: the window length the query was generated for.')
param windowSeconds int

@description('Minutes late readings are still accepted.')
param allowedLatenessMinutes int

@description('With asa: streaming units.')
param asaStreamingUnits int

@description('Azure SQL server name (the job writes sensor_values).')
param sqlServerName string

@description('Azure SQL database name.')
param sqlDatabaseName string

@description('Storage account of the raw archive and census.')
param storageAccountName string

@description('Container of the blob store.')
param storeContainer string

var hubName = 'readings'
var drainConsumerGroup = 'bscore'
var asaConsumerGroup = 'bscore-asa'
var asaJobName = '${name}-aggregation'
var dataReceiver = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde')
var dataSender = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '2b629674-e913-4c01-ae53-ef4638d8f975')
var withAsa = aggregation == 'asa'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: throughputUnits
  }
  properties: {
    disableLocalAuth: true // no SAS keys: senders and readers sign in with Entra
    isAutoInflateEnabled: true
    maximumThroughputUnits: maxThroughputUnits
    minimumTlsVersion: '1.2'
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitions
    messageRetentionInDays: 1
  }
}

resource drainGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: drainConsumerGroup
}

resource asaGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = if (withAsa) {
  parent: hub
  name: asaConsumerGroup
}

resource hostReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, hostPrincipalId, dataReceiver)
  scope: hub
  properties: {
    roleDefinitionId: dataReceiver
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource senders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for sender in senderPrincipalIds: {
  name: guid(hub.id, sender, dataSender)
  scope: hub
  properties: {
    roleDefinitionId: dataSender
    principalId: sender
  }
}]

resource asaJob 'Microsoft.StreamAnalytics/streamingjobs@2020-03-01' = if (withAsa) {
  name: asaJobName
  location: location
  tags: {
    bscore: 'sensor_aggregates'
    window_seconds: string(windowSeconds)
    allowed_lateness_minutes: string(allowedLatenessMinutes)
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    sku: {
      name: 'Standard'
    }
    jobType: 'Cloud'
    compatibilityLevel: '1.2'
    dataLocale: 'en-US'
    eventsOutOfOrderPolicy: 'Drop'
    eventsOutOfOrderMaxDelayInSeconds: allowedLatenessMinutes * 60
    eventsLateArrivalMaxDelayInSeconds: allowedLatenessMinutes * 60
    // A row SQL refuses stops the job rather than being lost; re-delivered windows are not
    // refused (sensor_values' key ignores duplicates on Azure SQL).
    outputErrorPolicy: 'Stop'
    inputs: [
      {
        name: 'readings'
        properties: {
          type: 'Stream'
          // Events are partitioned by device and every query step runs per partition
          // (PARTITION BY PartitionId, compatibility level 1.2).
          partitionKey: 'device'
          serialization: {
            type: 'Json'
            properties: {
              encoding: 'UTF8'
            }
          }
          datasource: {
            type: 'Microsoft.EventHub/EventHub'
            properties: {
              serviceBusNamespace: namespace.name
              eventHubName: hub.name
              consumerGroupName: asaConsumerGroup
              authenticationMode: 'Msi'
            }
          }
        }
      }
    ]
    transformation: {
      name: 'aggregate'
      properties: {
        streamingUnits: asaStreamingUnits
        query: aggregationQuery
      }
    }
    outputs: [
      {
        name: 'sensor-values'
        properties: {
          datasource: {
            type: 'Microsoft.Sql/Server/Database'
            properties: {
              server: sqlServerName
              database: sqlDatabaseName
              table: 'sensor_values'
              // One writer per input partition ("based on query partition").
              maxWriterCount: 0
              authenticationMode: 'Msi'
            }
          }
        }
      }
      {
        name: 'raw-archive'
        properties: {
          datasource: {
            type: 'Microsoft.Storage/Blob'
            properties: {
              storageAccounts: [
                {
                  accountName: storageAccountName
                }
              ]
              container: storeContainer
              pathPattern: 'raw/{hour}'
              authenticationMode: 'Msi'
            }
          }
          serialization: {
            type: 'Parquet'
          }
        }
      }
      {
        name: 'hour-census'
        properties: {
          datasource: {
            type: 'Microsoft.Storage/Blob'
            properties: {
              storageAccounts: [
                {
                  accountName: storageAccountName
                }
              ]
              container: storeContainer
              pathPattern: 'asa-census/{hour}'
              authenticationMode: 'Msi'
            }
          }
          serialization: {
            type: 'Parquet'
          }
        }
      }
    ]
  }
  dependsOn: [
    asaGroup
  ]
}

resource asaReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withAsa) {
  name: guid(hub.id, asaJobName, dataReceiver)
  scope: hub
  properties: {
    roleDefinitionId: dataReceiver
    principalId: withAsa ? asaJob.identity.principalId : ''
    principalType: 'ServicePrincipal'
  }
}

output namespaceName string = namespace.name
output hubName string = hub.name
output drainConsumerGroup string = drainGroup.name
output asaJobName string = withAsa ? asaJob.name : ''
output asaPrincipalId string = withAsa ? asaJob.identity.principalId : ''
