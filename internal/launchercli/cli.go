// Package launchercli is the launcher's command line: the controller, and
// submit, get, describe and cancel for teams.
package launchercli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	"tessera.dev/tessera/internal/apischeme"
	"tessera.dev/tessera/internal/version"
)

const usage = `usage: launcher <command> [flags]

commands:
  controller            run the TrainingJob / ServingGroup controllers and the topology-fit admission check
  submit -f FILE        create the TrainingJobs and ServingGroups in FILE (--wait: until they run)
  get                   list TrainingJobs and ServingGroups (-A: all namespaces)
  describe NAME         why a job or group waits or where it runs: queue, quota, checks, placement, events
  cancel NAME           delete a TrainingJob or ServingGroup and wait until its pods are gone
  version               print the launcher's version

common flags: --kubeconfig PATH, -n NAMESPACE`

// Run runs one command.
func Run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "controller":
		return runController(ctx, rest)
	case "submit":
		return runSubmit(ctx, rest, out)
	case "get":
		return runGet(ctx, rest, out)
	case "describe":
		return runDescribe(ctx, rest, out)
	case "cancel":
		return runCancel(ctx, rest, out)
	case "version", "--version":
		fmt.Fprintln(out, "launcher", version.String())
		return nil
	case "-h", "--help", "help":
		fmt.Fprintln(out, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

// common are the flags every client command takes.
type common struct {
	kubeconfig string
	namespace  string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	fs.StringVar(&c.namespace, "n", "", "namespace (default: the kubeconfig context's)")
}

// client returns a client for Tessera's and Kueue's types, and the
// namespace to work in.
func (c *common) client() (ctrlclient.Client, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.kubeconfig != "" {
		rules.ExplicitPath = c.kubeconfig
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	config, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	ns := c.namespace
	if ns == "" {
		if ns, _, err = loader.Namespace(); err != nil {
			return nil, "", err
		}
	}
	scheme, err := apischeme.New()
	if err != nil {
		return nil, "", err
	}
	cl, err := ctrlclient.New(config, ctrlclient.Options{Scheme: scheme})
	return cl, ns, err
}

// age formats how long ago t was, kubectl style.
func age(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// named finds the one TrainingJob or ServingGroup the parsed command line
// names (verb is the command, for the error).
func (c *common) named(ctx context.Context, fs *flag.FlagSet, verb string) (ctrlclient.Client, ctrlclient.Object, error) {
	if fs.NArg() != 1 {
		return nil, nil, fmt.Errorf("%s: give one TrainingJob or ServingGroup name", verb)
	}
	cl, ns, err := c.client()
	if err != nil {
		return nil, nil, err
	}
	obj, err := find(ctx, cl, ns, fs.Arg(0))
	return cl, obj, err
}
