package runnerapi

import "strconv"

// wire is what one runner API's wire looks like: everything the CI API v1 and the runner API v4 do differently,
// as data the shared code asks, chosen once when the client is made. Each API's value is in a file of its own
// (wire_v1.go, ...); nothing else in the package knows which API it speaks.
type wire struct {
	// api is the API this wire speaks, and name how errors call it.
	api  API
	name string
	// basePath is where the API lives below a coordinator's address, without the trailing slash.
	basePath string
	// addressSuffixes are what an address as users type it may end in beyond the coordinator's own address (the
	// API root itself, or /ci), tried in order; the first found is cut before basePath is added.
	addressSuffixes []string
	// jobs says that the API takes and reports jobs with JobsService (v4's payload and final update) rather than
	// builds with BuildsService.
	jobs bool
	// runnerTokens says that the API verifies and rotates runner tokens and removes runner managers.
	runnerTokens bool
	// jobTokenHeader carries the job's (build's) token on the trace and artifacts endpoints.
	jobTokenHeader string
	// statusHeader carries the job's status on trace and update answers.
	statusHeader string
	// inclusiveRangeEnd says that a trace part's Content-Range END is its last byte (START + length - 1) rather
	// than the byte after it.
	inclusiveRangeEnd bool
	// requestPath is where a runner asks for a job, relative to the API root.
	requestPath string
	// jobsPath is the prefix of a job's endpoints, relative to the API root: jobsPath + id is its update endpoint.
	jobsPath string
	// tracePathSuffix follows jobsPath + id on the trace endpoint.
	tracePathSuffix string
	// wholeTrace says that an update can replace a job's whole trace (v1's trace parameter): the trace writer's
	// way out when the coordinator has no trace endpoint, or holds more than was written.
	wholeTrace bool
	// jobArtifacts says that a job has several artifacts by type and format (artifact_type, artifact_format), a
	// 307 answer to an upload names the host to send it to again, and there is no runner-side delete.
	jobArtifacts bool
	// registerRunnerPath and unregisterRunnerPath are where runners are registered and removed.
	registerRunnerPath, unregisterRunnerPath string
}

// tokenHeaders are the headers of every API that carry a token: none of them may follow a redirect to another
// origin, whichever API the client speaks. They are in canonical form, as http.Header keeps them, so that looking
// them up costs no allocation.
var tokenHeaders = []string{"Build-Token", "Job-Token", "Runner-Token"}

// jobPath is the update endpoint of job id, relative to the API root.
func (w *wire) jobPath(id int64) string { return w.jobsPath + strconv.FormatInt(id, 10) }

// tracePath is the trace endpoint of job id, relative to the API root.
func (w *wire) tracePath(id int64) string { return w.jobPath(id) + w.tracePathSuffix }

// artifactsPath is the artifacts endpoint of job id, relative to the API root.
func (w *wire) artifactsPath(id int64) string { return w.jobPath(id) + "/artifacts" }

// contentRange is the Content-Range of a trace part of n bytes at offset. An empty part, which no END can span
// inclusively, gives START as its END on every API: coordinators read START alone.
func (w *wire) contentRange(offset int64, n int) string {
	end := offset + int64(n)
	if w.inclusiveRangeEnd && n > 0 {
		end--
	}
	return strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(end, 10)
}
