// The Dagster host: one container app, one replica (the daemon must be alone), running the host
// image (deploy/azure/host/Dockerfile) twice: dagster-webserver and dagster-daemon. Runs are
// processes of the daemon's container (DefaultRunLauncher); the heavy work is Azure ML jobs.
// The user-assigned identity signs in to everything; AZURE_CLIENT_ID tells DefaultAzureCredential
// which identity to use.

@description('Name prefix.')
param name string

@description('Region.')
param location string

@description('The host image.')
param image string

@description('Expose the UI outside the environment (put Container Apps authentication in front first).')
param webserverExternal bool

@description('Resource id of the host identity.')
param hostIdentityId string

@description('Client id of the host identity.')
param hostClientId string

@description('Display name of the host identity (its PostgreSQL role).')
param hostIdentityName string

@description('Log Analytics workspace of the environment logs.')
param logAnalyticsName string

@description('Registry login server.')
param registryServer string

@description('Azure ML workspace.')
param workspaceName string

@description('Azure ML cluster.')
param clusterName string

@description('Storage account of the store, checkpoints, Pipes and step logs.')
param storageAccountName string

@description('Container of the blob store (BSCORE_BLOB_URL).')
param storeContainer string

@description('Container of Pipes context and messages (AZUREML_CONTAINER).')
param pipesContainer string

@description('Container of Event Hubs checkpoints (EVENTHUB_CHECKPOINT_CONTAINER).')
param checkpointContainer string

@description('Container of Dagster step logs (DAGSTER_COMPUTE_LOGS_CONTAINER).')
param computeLogsContainer string

@description('Event Hubs namespace name, without .servicebus.windows.net.')
param eventHubNamespace string

@description('Event hub name (EVENTHUB_NAME).')
param eventHubName string

@description('Consumer group of the drain (EVENTHUB_CONSUMER_GROUP).')
param consumerGroup string

@description('Azure SQL server host name.')
param sqlServerFqdn string

@description('Azure SQL database name.')
param sqlDatabaseName string

@description('Host name of the Dagster instance PostgreSQL server (DAGSTER_PG_HOST).')
param dagsterServerFqdn string

@description('Database of the Dagster instance (DAGSTER_PG_DB).')
param dagsterDatabaseName string

@description('local or asa.')
param aggregation string

@description('Stream Analytics job name (asa).')
param asaJobName string

@description('Minutes late readings are still accepted.')
param allowedLatenessMinutes int

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {
  name: logAnalyticsName
}

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${name}-apps'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

var blobEndpoint = 'https://${storageAccountName}.blob.${az.environment().suffixes.storage}'
var settings = [
  { name: 'AZURE_CLIENT_ID', value: hostClientId }
  { name: 'DAGSTER_HOME', value: '/opt/dagster/home' }
  { name: 'BSCORE_HOME', value: '/var/lib/bscore' }
  { name: 'BSCORE_SQL_AUTH', value: 'entra' }
  { name: 'BSCORE_SQL_URL', value: 'mssql+pyodbc://@${sqlServerFqdn}:1433/${sqlDatabaseName}?driver=ODBC+Driver+18+for+SQL+Server&Encrypt=yes' }
  { name: 'BSCORE_BLOB_URL', value: '${blobEndpoint}/${storeContainer}' }
  { name: 'BSCORE_EVENTS', value: 'eventhub' }
  { name: 'EVENTHUB_FULLY_QUALIFIED_NAMESPACE', value: '${eventHubNamespace}.servicebus.windows.net' }
  { name: 'EVENTHUB_NAME', value: eventHubName }
  { name: 'EVENTHUB_CONSUMER_GROUP', value: consumerGroup }
  { name: 'EVENTHUB_CHECKPOINT_CONTAINER', value: checkpointContainer }
  { name: 'AZURE_STORAGE_ACCOUNT_URL', value: blobEndpoint }
  { name: 'BSCORE_COMPUTE', value: 'azureml' }
  { name: 'AZUREML_SUBSCRIPTION_ID', value: subscription().subscriptionId }
  { name: 'AZUREML_RESOURCE_GROUP', value: resourceGroup().name }
  { name: 'AZUREML_WORKSPACE', value: workspaceName }
  { name: 'AZUREML_CLUSTER', value: clusterName }
  { name: 'AZUREML_STORAGE_ACCOUNT_URL', value: blobEndpoint }
  { name: 'AZUREML_CONTAINER', value: pipesContainer }
  { name: 'BSCORE_AGGREGATION', value: aggregation }
  { name: 'BSCORE_ALLOWED_LATENESS_MINUTES', value: string(allowedLatenessMinutes) }
  { name: 'ASA_SUBSCRIPTION_ID', value: subscription().subscriptionId }
  { name: 'ASA_RESOURCE_GROUP', value: resourceGroup().name }
  { name: 'ASA_LOCATION', value: location }
  { name: 'ASA_JOB_NAME', value: empty(asaJobName) ? '${name}-aggregation' : asaJobName }
  { name: 'DAGSTER_PG_HOST', value: dagsterServerFqdn }
  { name: 'DAGSTER_PG_DB', value: dagsterDatabaseName }
  { name: 'DAGSTER_PG_PORT', value: '5432' }
  { name: 'DAGSTER_PG_USER', value: hostIdentityName }
  { name: 'PGSSLMODE', value: 'require' }
  { name: 'DAGSTER_COMPUTE_LOGS_ACCOUNT', value: storageAccountName }
  { name: 'DAGSTER_COMPUTE_LOGS_CONTAINER', value: computeLogsContainer }
]

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${name}-host'
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${hostIdentityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: environment.id
    configuration: {
      activeRevisionsMode: 'Single'
      registries: [
        {
          server: registryServer
          identity: hostIdentityId
        }
      ]
      ingress: {
        external: webserverExternal
        targetPort: 3000
        transport: 'http'
      }
    }
    template: {
      containers: [
        {
          name: 'webserver'
          image: image
          command: [
            'dagster-webserver'
          ]
          args: [
            '--host'
            '0.0.0.0'
            '--port'
            '3000'
            '--workspace'
            'workspace.yaml'
          ]
          env: settings
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
        }
        {
          name: 'daemon'
          image: image
          command: [
            'dagster-daemon'
          ]
          args: [
            'run'
            '--workspace'
            'workspace.yaml'
          ]
          env: settings
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
}

output appName string = app.name
