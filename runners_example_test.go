package runnerapi_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// A runner is registered once, with a registration token, for its runner token; it takes builds with that token,
// and once unregistered the token is refused.
func ExampleRunnersService_Register() {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRegistrationToken("instance-registration-token")
	srv.EnqueueCommands("hello", "echo hello")
	ctx := context.Background()

	c, _ := runnerapi.NewClient(srv.URL)
	runner, _, err := c.Runners.Register(ctx, "instance-registration-token", &runnerapi.RegisterRunnerOptions{
		Description: "docker on build-7",
		TagList:     []string{"docker", "linux"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("registered %v\n", runner) // the token is masked in any print

	build, _, err := c.Builds.Register(ctx, nil, runnerapi.WithToken(runner.Token))
	fmt.Println("took build", build.ID, build.Name, err)

	_, err = c.Runners.Unregister(ctx, runner.Token)
	fmt.Println("unregistered:", err)
	_, _, err = c.Builds.Register(ctx, nil, runnerapi.WithToken(runner.Token))
	fmt.Println("token refused:", errors.Is(err, runnerapi.ErrForbidden))
	// Output:
	// registered {1 [MASKED]}
	// took build 1 hello <nil>
	// unregistered: <nil>
	// token refused: true
}
