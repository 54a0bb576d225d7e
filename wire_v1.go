package runnerapi

// wireV1 is the CI Builds API v1 of GitLab 8.x and 9.x, as gitlab-ci-multi-runner 1.x speaks it.
var wireV1 = wire{
	api:                  APIv1,
	basePath:             "/ci/api/v1",
	jobTokenHeader:       "BUILD-TOKEN",
	statusHeader:         "Build-Status",
	inclusiveRangeEnd:    false, // runners of the time sent START + length
	requestPath:          "builds/register",
	jobsPath:             "builds/",
	tracePathSuffix:      "/trace.txt",
	wholeTrace:           true,
	registerRunnerPath:   "runners/register",
	unregisterRunnerPath: "runners/delete",
}
