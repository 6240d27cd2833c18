// bscore on Azure, the whole architecture in one resource group (docs/azure.md, "Deployment as
// code"): Event Hubs, Stream Analytics (optional), Azure SQL, Blob Storage, Container Registry,
// Azure ML workspace and its autoscaling cluster, and the Dagster host as a container app with
// its PostgreSQL instance storage. Every identity is a managed identity and every data-plane
// role is assigned here; no parameter is a secret and no resource has a password.
//
//   az deployment group create -g <rg> -f deploy/azure/main.bicep -p sqlAdminLogin=... sqlAdminObjectId=...
//
// The first deployment leaves hostImage empty (no host yet); build the image into the registry
// it created (az acr build), then deploy again with hostImage set.

targetScope = 'resourceGroup'

@description('Prefix of every resource name: 3-11 lowercase letters or digits, starting with a letter.')
@minLength(3)
@maxLength(11)
param name string = 'bscore'

@description('Region of every resource.')
param location string = resourceGroup().location

@description('Display name of the Microsoft Entra user or group that administers the Azure SQL server (runs the CREATE USER statements of docs/azure.md).')
param sqlAdminLogin string

@description('Object id of that Entra user or group.')
param sqlAdminObjectId string

@description('Kind of principal sqlAdminObjectId is.')
@allowed([
  'User'
  'Group'
  'Application'
])
param sqlAdminPrincipalType string = 'Group'

@description('Azure SQL database service objective (e.g. S1, S3, P1, GP_S_Gen5_2).')
param sqlDatabaseSku string = 'S1'

@description('Event hub partitions: the drain and Stream Analytics read them in parallel.')
@minValue(1)
@maxValue(32)
param eventHubPartitions int = 8

@description('Event Hubs Standard throughput units to start with (1,000 events/s in each).')
@minValue(1)
@maxValue(40)
param eventHubThroughputUnits int = 1

@description('Auto-inflate ceiling of throughput units (Standard tier: at most 40).')
@minValue(1)
@maxValue(40)
param eventHubMaxThroughputUnits int = 10

@description('Object ids of devices or users allowed to send readings (Azure Event Hubs Data Sender on the hub).')
param senderPrincipalIds array = []

@description('VM size of the Azure ML scoring cluster (AZUREML_VM_SIZE).')
param clusterVmSize string = 'Standard_DS3_v2'

@description('Most nodes the scoring cluster scales to (AZUREML_MAX_NODES); it scales to 0 when idle.')
@minValue(1)
param clusterMaxNodes int = 4

@description('Aggregation path (BSCORE_AGGREGATION): local, on the Dagster host, or asa, a Stream Analytics job.')
@allowed([
  'local'
  'asa'
])
param aggregation string = 'local'

@description('With asa: the job query, as bscore generates it (python -c "from resources.asa import aggregation_query; print(aggregation_query(5))").')
param aggregationQuery string = ''

@description('With asa: the window length in seconds the query was generated for (the pipeline\'s window_seconds).')
param windowSeconds int = 5

@description('Minutes late readings are still accepted (BSCORE_ALLOWED_LATENESS_MINUTES; with asa at most 9).')
@minValue(0)
@maxValue(9)
param allowedLatenessMinutes int = 5

@description('With asa: streaming units of the job (ASA_STREAMING_UNITS).')
param asaStreamingUnits int = 3

@description('The Dagster host image, <registry>.azurecr.io/bscore-host:<tag>; empty deploys everything but the host.')
param hostImage string = ''

@description('Expose the Dagster UI outside the Container Apps environment. It has no login of its own: put Container Apps authentication in front first (docs/reliability.md).')
param webserverExternal bool = false

var suffix = uniqueString(resourceGroup().id)
var compact = toLower(replace(name, '-', ''))
var storeAccountName = take('${compact}store${suffix}', 24)

resource hostIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-host'
  location: location
}

module ml 'modules/ml.bicep' = {
  name: 'ml'
  params: {
    name: name
    location: location
    storageName: take('${compact}ml${suffix}', 24)
    registryName: take('${compact}acr${suffix}', 50)
    keyVaultName: take('${compact}-kv-${suffix}', 24)
    clusterVmSize: clusterVmSize
    clusterMaxNodes: clusterMaxNodes
    hostPrincipalId: hostIdentity.properties.principalId
  }
}

module events 'modules/events.bicep' = {
  name: 'events'
  params: {
    name: name
    location: location
    namespaceName: '${name}-events-${suffix}'
    partitions: eventHubPartitions
    throughputUnits: eventHubThroughputUnits
    maxThroughputUnits: eventHubMaxThroughputUnits
    hostPrincipalId: hostIdentity.properties.principalId
    senderPrincipalIds: senderPrincipalIds
    aggregation: aggregation
    aggregationQuery: aggregationQuery
    windowSeconds: windowSeconds
    allowedLatenessMinutes: allowedLatenessMinutes
    asaStreamingUnits: asaStreamingUnits
    sqlServerName: sql.outputs.serverName
    sqlDatabaseName: sql.outputs.databaseName
    storageAccountName: storage.outputs.accountName
    storeContainer: storage.outputs.storeContainer
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    accountName: storeAccountName
    hostPrincipalId: hostIdentity.properties.principalId
    clusterPrincipalId: ml.outputs.clusterPrincipalId
  }
}

// Stream Analytics' identity exists only once its job does, after the storage account: its
// blob role is assigned here rather than in the storage module, which would make a cycle.
resource storeAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storeAccountName
}

resource asaBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (aggregation == 'asa') {
  name: guid(storeAccount.id, '${name}-aggregation', 'Storage Blob Data Contributor')
  scope: storeAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: events.outputs.asaPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    storage
  ]
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  params: {
    name: name
    location: location
    sqlServerName: '${name}-sql-${suffix}'
    sqlAdminLogin: sqlAdminLogin
    sqlAdminObjectId: sqlAdminObjectId
    sqlAdminPrincipalType: sqlAdminPrincipalType
    sqlDatabaseSku: sqlDatabaseSku
    dagsterServerName: '${name}-dagster-${suffix}'
    hostIdentityName: hostIdentity.name
    hostPrincipalId: hostIdentity.properties.principalId
  }
}

module host 'modules/host.bicep' = if (!empty(hostImage)) {
  name: 'host'
  params: {
    name: name
    location: location
    image: hostImage
    webserverExternal: webserverExternal
    hostIdentityId: hostIdentity.id
    hostClientId: hostIdentity.properties.clientId
    hostIdentityName: hostIdentity.name
    logAnalyticsName: ml.outputs.logAnalyticsName
    registryServer: ml.outputs.registryServer
    workspaceName: ml.outputs.workspaceName
    clusterName: ml.outputs.clusterName
    storageAccountName: storage.outputs.accountName
    storeContainer: storage.outputs.storeContainer
    pipesContainer: storage.outputs.pipesContainer
    checkpointContainer: storage.outputs.checkpointContainer
    computeLogsContainer: storage.outputs.computeLogsContainer
    eventHubNamespace: events.outputs.namespaceName
    eventHubName: events.outputs.hubName
    consumerGroup: events.outputs.drainConsumerGroup
    sqlServerFqdn: sql.outputs.serverFqdn
    sqlDatabaseName: sql.outputs.databaseName
    dagsterServerFqdn: sql.outputs.dagsterServerFqdn
    dagsterDatabaseName: sql.outputs.dagsterDatabaseName
    aggregation: aggregation
    asaJobName: events.outputs.asaJobName
    allowedLatenessMinutes: allowedLatenessMinutes
  }
}

@description('Principal id of the Dagster host identity (database principal: docs/azure.md, SQL with managed identity).')
output hostPrincipalId string = hostIdentity.properties.principalId

@description('Display name of the Dagster host identity, the name its Azure SQL user is created with.')
output hostIdentityName string = hostIdentity.name

@description('Principal id of the scoring cluster identity.')
output clusterPrincipalId string = ml.outputs.clusterPrincipalId

@description('Principal id of the Stream Analytics job identity (empty with local aggregation).')
output asaPrincipalId string = events.outputs.asaPrincipalId

@description('Login server of the container registry the host image is built into.')
output registryServer string = ml.outputs.registryServer

@description('Registry name, for az acr build.')
output registryName string = ml.outputs.registryName

@description('Azure ML workspace (AZUREML_WORKSPACE).')
output workspaceName string = ml.outputs.workspaceName

@description('Azure SQL server host name.')
output sqlServerFqdn string = sql.outputs.serverFqdn

@description('BSCORE_BLOB_URL of the store.')
output blobUrl string = 'https://${storage.outputs.accountName}.blob.${environment().suffixes.storage}/${storage.outputs.storeContainer}'

@description('Fully qualified Event Hubs namespace (EVENTHUB_FULLY_QUALIFIED_NAMESPACE).')
output eventHubNamespace string = '${events.outputs.namespaceName}.servicebus.windows.net'
