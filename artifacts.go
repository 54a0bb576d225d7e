package runnerapi

// ArtifactsService uploads, downloads and deletes a build's artifacts file. Reach it as Client.Artifacts.
type ArtifactsService service
