package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/cluster"
	"tessera.dev/tessera/internal/launchercli"
	"tessera.dev/tessera/pkg/launcher"
)

// annotationRunFor, on an example job, is how long the demo lets its pods
// run before completing them, as the kubelet would report at the end of
// training.
const annotationRunFor = "tessera.dev/demo-run-for"

// jobRecord is what the demo saw of one TrainingJob's phases.
type jobRecord struct {
	runningSince  time.Time
	phase         tesserav1alpha1.TrainingJobPhase
	lastPhaseLine string
}

// runLauncherDemo adds the training pool, runs the launcher, submits
// examples/launcher through its CLI and reports admission and placement.
func runLauncherDemo(ctx context.Context, c *cluster.Cluster, client kubernetes.Interface, cr ctrlclient.Client, repo string, timeout time.Duration) error {
	progress("clearing the pod examples; the training pool joins")
	if err := client.CoreV1().Pods(demoNamespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{}); err != nil {
		return err
	}
	if err := joinNodes(ctx, c, client, cr, repo, poolNodes, len(demoNodes)+len(poolNodes), timeout); err != nil {
		return err
	}
	progress("starting the launcher (TrainingJob and ServingGroup controllers, topology-fit admission check)")
	if err := c.StartProcess(ctx, "launcher", filepath.Join(repo, "bin", "launcher"), "controller",
		"--kubeconfig="+c.KubeconfigPath, "--metrics-bind-address=0", "--health-probe-bind-address=0", "--recheck-interval=1s"); err != nil {
		return err
	}
	dir := filepath.Join(repo, "examples", "launcher")
	decoder := serializer.NewCodecFactory(cr.Scheme()).UniversalDeserializer()
	if err := createQueues(ctx, cr, decoder, filepath.Join(dir, "queues.yaml"), timeout); err != nil {
		return err
	}
	progress("notebooks outside Kueue take one H100 on h100-d3, h100-e0 and h100-e1 (examples/launcher/interactive.yaml)")
	if err := createFromFile(ctx, cr, decoder, filepath.Join(dir, "interactive.yaml")); err != nil {
		return err
	}
	if err := waitPodsRunning(ctx, cr, timeout); err != nil {
		return err
	}
	submit := func(file string) error {
		progress("submitting examples/launcher/%s with the launcher CLI", file)
		return launchercli.Run(ctx, []string{"submit", "-f", filepath.Join(dir, file), "--kubeconfig", c.KubeconfigPath, "-n", demoNamespace}, os.Stdout)
	}
	if err := submit("jobs.yaml"); err != nil {
		return err
	}
	sampler := newPoolSampler(cr)
	// The serving groups come once pretrain runs on borrowed quota.
	records, waitErr := followJobs(ctx, c, cr, sampler, timeout, "pretrain", func() error { return submit("serving.yaml") })
	if err := sampler.printReport(os.Stdout); err != nil {
		return err
	}
	fmt.Println()
	for _, group := range []string{"llama-70b", "llama-405b"} {
		if err := launchercli.Run(ctx, []string{"describe", "--kubeconfig", c.KubeconfigPath, "-n", demoNamespace, group}, os.Stdout); err != nil {
			return err
		}
		fmt.Println()
	}
	if waitErr != nil {
		return waitErr
	}
	return errors.Join(checkJobs(records), sampler.check())
}

// createFromFile creates a manifest's objects, namespaced ones in the demo
// namespace.
func createFromFile(ctx context.Context, cr ctrlclient.Client, decoder runtime.Decoder, file string) error {
	objs, err := cluster.ReadManifestFile(decoder, file)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, obj := range objs {
		namespaced, err := cr.IsObjectNamespaced(obj)
		if err != nil {
			return err
		}
		if namespaced {
			obj.SetNamespace(demoNamespace)
		}
		if err := cr.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// waitPodsRunning waits until every pod of the demo namespace runs.
func waitPodsRunning(ctx context.Context, cr ctrlclient.Client, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var pods corev1.PodList
		if err := cr.List(ctx, &pods, ctrlclient.InNamespace(demoNamespace)); err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning {
				return false, nil
			}
		}
		return true, nil
	})
}

// createQueues creates the Kueue objects of file and waits until every
// ClusterQueue is active.
func createQueues(ctx context.Context, cr ctrlclient.Client, decoder runtime.Decoder, file string, timeout time.Duration) error {
	if err := createFromFile(ctx, cr, decoder, file); err != nil {
		return err
	}
	return waitQueuesActive(ctx, cr, timeout)
}

func waitQueuesActive(ctx context.Context, cr ctrlclient.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var list kueue.ClusterQueueList
		if err := cr.List(ctx, &list); err != nil {
			return err
		}
		active := 0
		for _, cq := range list.Items {
			if apimeta.IsStatusConditionTrue(cq.Status.Conditions, kueue.ClusterQueueActive) {
				active++
			}
		}
		if active == len(list.Items) && active > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("ClusterQueues not active (is the topology-fit check Active?)")
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

// followJobs prints each job's phase changes, completes pods once they
// have run for their demo-run-for, calls then once the job named trigger
// runs, samples the pool, and returns when every job has ended and every
// serving group is available.
func followJobs(ctx context.Context, c *cluster.Cluster, cr ctrlclient.Client, sampler *poolSampler, timeout time.Duration,
	trigger string, then func() error) (map[string]*jobRecord, error) {
	start := sampler.start
	records := map[string]*jobRecord{}
	notebooks := map[string]time.Time{}
	for {
		if err := c.Healthy(); err != nil {
			return records, err
		}
		var jobs tesserav1alpha1.TrainingJobList
		if err := cr.List(ctx, &jobs, ctrlclient.InNamespace(demoNamespace)); err != nil {
			return records, err
		}
		if err := sampler.sample(ctx); err != nil {
			return records, err
		}
		if err := completeNotebooks(ctx, cr, notebooks); err != nil {
			return records, err
		}
		done := true
		for i := range jobs.Items {
			j := &jobs.Items[i]
			rec := records[j.Name]
			if rec == nil {
				rec = &jobRecord{}
				records[j.Name] = rec
			}
			if err := observe(ctx, cr, j, rec, start); err != nil {
				return records, err
			}
			if j.Status.Phase != launcher.PhaseSucceeded && j.Status.Phase != launcher.PhaseFailed {
				done = false
			}
			if j.Name == trigger && !rec.runningSince.IsZero() && then != nil {
				if err := then(); err != nil {
					return records, err
				}
				then = nil
			}
		}
		if then != nil {
			done = false
		}
		var groups tesserav1alpha1.ServingGroupList
		if err := cr.List(ctx, &groups, ctrlclient.InNamespace(demoNamespace)); err != nil {
			return records, err
		}
		for _, g := range groups.Items {
			if !apimeta.IsStatusConditionTrue(g.Status.Conditions, launcher.ConditionAvailable) {
				done = false
			}
		}
		if done && len(jobs.Items) > 0 {
			// Once more: this round's sample was taken before the groups
			// were seen available, perhaps before their pods ran.
			return records, sampler.sample(ctx)
		}
		if time.Since(start) > timeout {
			return records, fmt.Errorf("launcher examples not finished after %s", timeout)
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return records, err
		}
	}
}

// observe records one job's state and plays its training run's end.
func observe(ctx context.Context, cr ctrlclient.Client, j *tesserav1alpha1.TrainingJob, rec *jobRecord, start time.Time) error {
	msg := ""
	if cond := apimeta.FindStatusCondition(j.Status.Conditions, string(j.Status.Phase)); cond != nil {
		msg = cond.Message
	}
	line := fmt.Sprintf("%s: %s", j.Status.Phase, msg)
	if j.Status.Phase != "" && line != rec.lastPhaseLine {
		fmt.Printf("[%5.1fs] trainingjob/%-9s %s\n", time.Since(start).Seconds(), j.Name, line)
		rec.lastPhaseLine = line
	}
	rec.phase = j.Status.Phase
	if j.Status.Phase != launcher.PhaseRunning {
		return nil
	}
	if rec.runningSince.IsZero() {
		rec.runningSince = time.Now()
	}
	runFor, err := time.ParseDuration(j.Annotations[annotationRunFor])
	if err != nil || time.Since(rec.runningSince) < runFor {
		return nil
	}
	var pods corev1.PodList
	if err := cr.List(ctx, &pods, ctrlclient.InNamespace(j.Namespace), ctrlclient.MatchingLabels{launcher.LabelTrainingJob: j.Name}); err != nil {
		return err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodRunning {
			p.Status.Phase = corev1.PodSucceeded
			if err := cr.Status().Update(ctx, p); err != nil {
				return fmt.Errorf("completing pod %s: %w", p.Name, err)
			}
		}
	}
	return nil
}

// checkJobs fails the demo unless every job succeeded.
func checkJobs(records map[string]*jobRecord) error {
	var errs []error
	for name, r := range records {
		if r.phase != launcher.PhaseSucceeded {
			errs = append(errs, fmt.Errorf("job %s ended %s, want Succeeded", name, r.phase))
		}
	}
	return errors.Join(errs...)
}

// completeNotebooks completes the pods that carry their own demo-run-for
// once they have run that long (running holds when each was first seen
// running).
func completeNotebooks(ctx context.Context, cr ctrlclient.Client, running map[string]time.Time) error {
	var pods corev1.PodList
	if err := cr.List(ctx, &pods, ctrlclient.InNamespace(demoNamespace)); err != nil {
		return err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		runFor, err := time.ParseDuration(p.Annotations[annotationRunFor])
		if err != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		if _, ok := running[p.Name]; !ok {
			running[p.Name] = time.Now()
		}
		if time.Since(running[p.Name]) < runFor {
			continue
		}
		p.Status.Phase = corev1.PodSucceeded
		if err := cr.Status().Update(ctx, p); err != nil {
			return fmt.Errorf("completing pod %s: %w", p.Name, err)
		}
		progress("%s ended after %s", p.Name, runFor)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
