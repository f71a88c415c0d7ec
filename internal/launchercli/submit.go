package launchercli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/launcher"
)

func runSubmit(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	var c common
	c.register(fs)
	file := fs.String("f", "", "YAML file of TrainingJobs and ServingGroups (- for standard input)")
	waitFor := fs.Bool("wait", false, "wait until each job runs (or ends) and each group is available, printing progress")
	timeout := fs.Duration("timeout", 10*time.Minute, "with --wait: how long to wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("submit: -f FILE is required")
	}
	objs, err := readObjects(*file)
	if err != nil {
		return err
	}
	cl, ns, err := c.client()
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(ns)
		}
		if err := cl.Create(ctx, obj); err != nil {
			return fmt.Errorf("submitting %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
		}
		fmt.Fprintf(out, "%s/%s submitted\n", kindOf(obj), obj.GetName())
	}
	if !*waitFor {
		return nil
	}
	for _, obj := range objs {
		if err := waitRunning(ctx, cl, obj, *timeout, out); err != nil {
			return err
		}
	}
	return nil
}

// readObjects decodes the TrainingJobs and ServingGroups of a YAML stream;
// any other kind is an error naming it.
func readObjects(path string) ([]ctrlclient.Object, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []ctrlclient.Object
	for i := 1; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var head struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		var obj ctrlclient.Object
		switch head.Kind {
		case "TrainingJob":
			obj = &tesserav1alpha1.TrainingJob{}
		case "ServingGroup":
			obj = &tesserav1alpha1.ServingGroup{}
		default:
			return nil, fmt.Errorf("%s: document %d: kind %q: submit takes TrainingJob and ServingGroup", path, i, head.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s): %w", path, i, head.Kind, err)
		}
		objs = append(objs, obj)
	}
}

func kindOf(obj ctrlclient.Object) string {
	if _, ok := obj.(*tesserav1alpha1.ServingGroup); ok {
		return "servinggroup"
	}
	return "trainingjob"
}

// waitRunning polls obj, printing each new status line, until a job runs
// or ends, or a group is available.
func waitRunning(ctx context.Context, cl ctrlclient.Client, obj ctrlclient.Object, timeout time.Duration, out io.Writer) error {
	last := ""
	start := time.Now()
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, ctrlclient.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err
		}
		line, done := progressLine(obj)
		if line != last {
			fmt.Fprintf(out, "[%5.1fs] %s/%s: %s\n", time.Since(start).Seconds(), kindOf(obj), obj.GetName(), line)
			last = line
		}
		return done, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s/%s (last: %s): %w", kindOf(obj), obj.GetName(), last, err)
	}
	return nil
}

func progressLine(obj ctrlclient.Object) (string, bool) {
	switch o := obj.(type) {
	case *tesserav1alpha1.TrainingJob:
		msg := ""
		if c := apimeta.FindStatusCondition(o.Status.Conditions, string(o.Status.Phase)); c != nil {
			msg = ": " + c.Message
		}
		p := o.Status.Phase
		return string(p) + msg, p == launcher.PhaseRunning || p == launcher.PhaseSucceeded || p == launcher.PhaseFailed
	case *tesserav1alpha1.ServingGroup:
		msg := ""
		if c := apimeta.FindStatusCondition(o.Status.Conditions, launcher.ConditionAvailable); c != nil {
			msg = c.Message
		}
		return msg, apimeta.IsStatusConditionTrue(o.Status.Conditions, launcher.ConditionAvailable)
	}
	return "", true
}
