package runnerapi

// runnerTokenHeaderV4 carries the runner token besides the token parameter, as gitlab-runner sends it; GitLab reads
// the parameter.
const runnerTokenHeaderV4 = "RUNNER-TOKEN"

// wireV4 is the runner API v4 of every GitLab since 9.0, as gitlab-runner speaks it today.
var wireV4 = wire{
	api:      APIv4,
	name:     "runner API v4",
	basePath: "/api/v4",
	// As gitlab-runner does: an address ending in /ci (the v1 habit) means the instance above it.
	addressSuffixes:      []string{"/api/v4", "/ci/api/v1", "/ci"},
	jobs:                 true,
	runnerTokens:         true,
	jobTokenHeader:       "JOB-TOKEN",
	statusHeader:         "Job-Status",
	inclusiveRangeEnd:    true, // gitlab-runner since 11.3; GitLab reads START alone
	requestPath:          "jobs/request",
	jobsPath:             "jobs/",
	tracePathSuffix:      "/trace",
	wholeTrace:           false, // the trace parameter of PUT jobs/:id went away in GitLab 10.x
	jobArtifacts:         true,
	registerRunnerPath:   "runners",
	unregisterRunnerPath: "runners",
}
