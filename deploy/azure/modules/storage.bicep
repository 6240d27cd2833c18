// The blob store and its containers: bscore's store (raw/, models/, predictions/, verdicts/,
// deadletter/), Event Hubs checkpoints, Azure ML Pipes context and messages, Dagster step logs.
// Keyless: every client signs in with Entra (shared keys off), so roles decide who reads what.

@description('Region.')
param location string

@description('Storage account name (globally unique, 3-24 lowercase letters and digits).')
param accountName string

@description('Principal id of the Dagster host identity.')
param hostPrincipalId string

@description('Principal id of the scoring cluster identity.')
param clusterPrincipalId string

var storeContainer = 'bscore'
var checkpointContainer = 'eventhub-checkpoints'
var pipesContainer = 'bscore-pipes'
var computeLogsContainer = 'dagster-logs'
var blobDataContributor = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: accountName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    isHnsEnabled: false
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for container in [
  storeContainer
  checkpointContainer
  pipesContainer
  computeLogsContainer
]: {
  parent: blobs
  name: container
  properties: {
    publicAccess: 'None'
  }
}]

// Pipes context and messages are read once, by the run that wrote them: a week is plenty.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'pipes-after-7-days'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${pipesContainer}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 7
                }
              }
            }
          }
        }
      ]
    }
  }
}

// The host: the store, checkpoints, Pipes, step logs (and signing the UI's log links).
resource hostBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, hostPrincipalId, blobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: blobDataContributor
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The scoring jobs: models in, prediction parts out, Pipes context and messages.
resource clusterBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, 'cluster', blobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: blobDataContributor
    principalId: clusterPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output accountName string = account.name
output storeContainer string = storeContainer
output checkpointContainer string = checkpointContainer
output pipesContainer string = pipesContainer
output computeLogsContainer string = computeLogsContainer
