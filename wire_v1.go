package runnerapi

// wireV1 is the CI Builds API v1 of GitLab 8.x and 9.x, as gitlab-ci-multi-runner 1.x speaks it.
var wireV1 = wire{
	api:                  APIv1,
	name:                 "CI Builds API v1",
	basePath:             "/ci/api/v1",
	addressSuffixes:      []string{"/ci/api/v1", "/ci"},
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
