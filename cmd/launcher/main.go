// Command launcher runs training jobs and vLLM serving groups under Kueue:
// `launcher controller` is the in-cluster controller (TrainingJob,
// ServingGroup and the tessera.dev/topology-fit admission check), and
// submit, get, describe and cancel are the team's CLI.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"tessera.dev/tessera/internal/launchercli"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := launchercli.Run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(1)
	}
}
