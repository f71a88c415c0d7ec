package launchercli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/launcher"
)

func runGet(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	var c common
	c.register(fs)
	all := fs.Bool("A", false, "all namespaces")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cl, ns, err := c.client()
	if err != nil {
		return err
	}
	var opts []ctrlclient.ListOption
	if !*all {
		opts = append(opts, ctrlclient.InNamespace(ns))
	}
	var jobs tesserav1alpha1.TrainingJobList
	if err := cl.List(ctx, &jobs, opts...); err != nil {
		return err
	}
	var groups tesserav1alpha1.ServingGroupList
	if err := cl.List(ctx, &groups, opts...); err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tTRAININGJOB\tQUEUE\tNODES\tGPUS/NODE\tPHASE\tRESTARTS\tAGE")
	for _, j := range jobs.Items {
		nodes := fmt.Sprint(j.Spec.Nodes.Min)
		if j.Spec.Nodes.Max != nil && *j.Spec.Nodes.Max != j.Spec.Nodes.Min {
			nodes = fmt.Sprintf("%d-%d", j.Spec.Nodes.Min, *j.Spec.Nodes.Max)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", j.Namespace, j.Name, j.Spec.QueueName, nodes, j.Spec.GPUsPerNode, j.Status.Phase, j.Status.Restarts, age(j.CreationTimestamp.Time))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "NAMESPACE\tSERVINGGROUP\tQUEUE\tMODEL\tGPUS/REPLICA\tREPLICAS\tREADY\tAGE")
	for _, g := range groups.Items {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", g.Namespace, g.Name, g.Spec.QueueName, g.Spec.Model,
			g.Spec.TensorParallelSize*max(g.Spec.PipelineParallelSize, 1), g.Spec.Replicas, g.Status.ReadyReplicas, age(g.CreationTimestamp.Time))
	}
	return w.Flush()
}

func runCancel(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	var c common
	c.register(fs)
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the pods to go")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cl, obj, err := c.named(ctx, fs, "cancel")
	if err != nil {
		return err
	}
	if err := cl.Delete(ctx, obj); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s/%s: deleting its pods, gang and Kueue workload\n", kindOf(obj), obj.GetName())
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, *timeout, true, func(ctx context.Context) (bool, error) {
		err := cl.Get(ctx, ctrlclient.ObjectKeyFromObject(obj), obj)
		return apierrors.IsNotFound(err), ctrlclient.IgnoreNotFound(err)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to go (is the launcher controller running?): %w", obj.GetName(), err)
	}
	fmt.Fprintf(out, "%s/%s cancelled\n", kindOf(obj), obj.GetName())
	return nil
}

// find returns the TrainingJob or ServingGroup called name.
func find(ctx context.Context, cl ctrlclient.Client, ns, name string) (ctrlclient.Object, error) {
	key := ctrlclient.ObjectKey{Namespace: ns, Name: name}
	job := &tesserav1alpha1.TrainingJob{}
	err := cl.Get(ctx, key, job)
	if err == nil || !apierrors.IsNotFound(err) {
		return job, err
	}
	group := &tesserav1alpha1.ServingGroup{}
	if err := cl.Get(ctx, key, group); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no TrainingJob or ServingGroup %s in namespace %s", name, ns)
		}
		return nil, err
	}
	return group, nil
}

// podsOf lists the pods the launcher made for obj.
func podsOf(ctx context.Context, cl ctrlclient.Client, obj ctrlclient.Object) ([]corev1.Pod, error) {
	label := launcher.LabelTrainingJob
	if _, ok := obj.(*tesserav1alpha1.ServingGroup); ok {
		label = launcher.LabelServingGroup
	}
	var pods corev1.PodList
	err := cl.List(ctx, &pods, ctrlclient.InNamespace(obj.GetNamespace()), ctrlclient.MatchingLabels{label: obj.GetName()})
	return pods.Items, err
}
