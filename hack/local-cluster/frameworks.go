package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/internal/gpunodes"
)

// frameworkNodes join for the last part: the pool the frameworks queue's
// flavor selects, one rack that holds the canonical PyTorchJob and one
// that does not.
var frameworkNodes = []demoNode{
	{"h100-f0", "dgx-h100", "rack-f", "frameworks"},
	{"h100-f1", "dgx-h100", "rack-f", "frameworks"},
	{"h100-f2", "dgx-h100", "rack-f", "frameworks"},
	{"h100-f3", "dgx-h100", "rack-f", "frameworks"},
	{"h100-f4", "dgx-h100", "rack-f", "frameworks"},
	{"h100-g0", "dgx-h100", "rack-g", "frameworks"},
	{"h100-g1", "dgx-h100", "rack-g", "frameworks"},
	{"h100-g2", "dgx-h100", "rack-g", "frameworks"},
}

// frameworkWorkload is one workload of examples/frameworks as the demo
// follows it: the pods it expects, by label, and the rack they must share.
type frameworkWorkload struct {
	file, name string
	selector   ctrlclient.MatchingLabels
	pods       int
	rack       string
}

var frameworkWorkloads = []frameworkWorkload{
	{file: "pytorchjob.yaml", name: "pytorchjob/llama-ft", selector: ctrlclient.MatchingLabels{"training.kubeflow.org/job-name": "llama-ft"}, pods: 5, rack: "rack-f"},
	{file: "lws-vllm.yaml", name: "leaderworkerset/llama-405b-mh", selector: ctrlclient.MatchingLabels{lwsv1.SetNameLabelKey: "llama-405b-mh"}, pods: 2, rack: "rack-g"},
}

// runFrameworksDemo submits workloads teams already run, a PyTorchJob and
// a LeaderWorkerSet with only a queue label (and for the LWS, Tessera's
// scheduler name), through Kueue and Tessera, one after the other, and
// reports where each landed.
func runFrameworksDemo(ctx context.Context, c *cluster.Cluster, client kubernetes.Interface, cr ctrlclient.Client, repo string, timeout time.Duration) error {
	progress("the frameworks pool joins: rack-f (five DGX H100) and rack-g (three)")
	if err := joinNodes(ctx, c, client, cr, repo, frameworkNodes, len(demoNodes)+len(poolNodes)+len(frameworkNodes), timeout); err != nil {
		return err
	}
	dir := filepath.Join(repo, "examples", "frameworks")
	decoder := serializer.NewCodecFactory(cr.Scheme()).UniversalDeserializer()
	if err := createQueues(ctx, cr, decoder, filepath.Join(dir, "queues.yaml"), timeout); err != nil {
		return err
	}
	var all []*corev1.Pod
	var errs []error
	for _, w := range frameworkWorkloads {
		progress("submitting examples/frameworks/%s (%s) through Kueue", w.file, w.name)
		start := time.Now()
		if err := createFromFile(ctx, cr, decoder, filepath.Join(dir, w.file)); err != nil {
			return err
		}
		pods, err := waitBound(ctx, c, cr, w, timeout)
		if err != nil {
			return err
		}
		progress("%s: %d pods bound together %.1fs after submission", w.name, len(pods), time.Since(start).Seconds())
		all = append(all, pods...)
		errs = append(errs, checkFramework(ctx, client, w, pods))
	}
	if err := printPlacements(os.Stdout, client, all); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// waitBound waits until the workload's pods are all bound.
func waitBound(ctx context.Context, c *cluster.Cluster, cr ctrlclient.Client, w frameworkWorkload, timeout time.Duration) ([]*corev1.Pod, error) {
	var bound []*corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Healthy(); err != nil {
			return false, err
		}
		var pods corev1.PodList
		if err := cr.List(ctx, &pods, ctrlclient.InNamespace(demoNamespace), w.selector); err != nil {
			return false, err
		}
		bound = bound[:0]
		for i := range pods.Items {
			if pods.Items[i].Spec.NodeName != "" {
				bound = append(bound, &pods.Items[i])
			}
		}
		return len(bound) == w.pods, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %d of %d pods bound after %s: %w", w.name, len(bound), w.pods, timeout, err)
	}
	return bound, nil
}

// checkFramework fails the demo unless the workload's pods are one gang in
// its expected rack, each with its node's eight GPUs.
func checkFramework(ctx context.Context, client kubernetes.Interface, w frameworkWorkload, pods []*corev1.Pod) error {
	var errs []error
	gangs := map[string]bool{}
	for _, p := range pods {
		gangs[p.Labels[schedv1alpha1.PodGroupLabel]] = true
		node, err := client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rack := node.Labels[gpunodes.LabelRack]; rack != w.rack {
			errs = append(errs, fmt.Errorf("%s: pod %s in %s, want %s", w.name, p.Name, rack, w.rack))
		}
		if ids, err := tesserav1alpha1.ParseGPUIDs(p.Annotations[tesserav1alpha1.AnnotationGPUIDs]); err != nil || len(ids) != 8 {
			errs = append(errs, fmt.Errorf("%s: pod %s has GPUs %v (%v), want its node's 8", w.name, p.Name, ids, err))
		}
	}
	if len(gangs) != 1 || gangs[""] {
		errs = append(errs, fmt.Errorf("%s: pods in gangs %v, want one", w.name, gangs))
	}
	return errors.Join(errs...)
}
