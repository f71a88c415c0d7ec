package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
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

// jobRecord is what the demo saw of one TrainingJob.
type jobRecord struct {
	name, queue   string
	submitted     time.Time
	runningSince  time.Time
	waitedQuota   bool
	waitedFit     bool
	placement     []string
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
	if err := createNodes(ctx, client, poolNodes); err != nil {
		return err
	}
	if err := startNodeAgents(ctx, c, filepath.Join(repo, "bin", "node-agent"), poolNodes); err != nil {
		return err
	}
	if _, err := waitTopologies(ctx, c, cr, len(demoNodes)+len(poolNodes), timeout); err != nil {
		return err
	}
	progress("starting the launcher (TrainingJob and ServingGroup controllers, topology-fit admission check)")
	if err := c.StartProcess(ctx, "launcher", filepath.Join(repo, "bin", "launcher"), "controller",
		"--kubeconfig="+c.KubeconfigPath, "--metrics-bind-address=0", "--health-probe-bind-address=0", "--recheck-interval=1s"); err != nil {
		return err
	}
	dir := filepath.Join(repo, "examples", "launcher")
	queues, err := cluster.ReadManifestFile(serializer.NewCodecFactory(cr.Scheme()).UniversalDeserializer(), filepath.Join(dir, "queues.yaml"))
	if err != nil {
		return err
	}
	for _, obj := range queues {
		if _, ok := obj.(*kueue.LocalQueue); ok {
			obj.SetNamespace(demoNamespace)
		}
		if err := cr.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	if err := waitQueuesActive(ctx, cr, timeout); err != nil {
		return err
	}
	progress("submitting examples/launcher/jobs.yaml with the launcher CLI")
	if err := launchercli.Run(ctx, []string{"submit", "-f", filepath.Join(dir, "jobs.yaml"), "--kubeconfig", c.KubeconfigPath, "-n", demoNamespace}, os.Stdout); err != nil {
		return err
	}
	records, waitErr := followJobs(ctx, c, cr, timeout)
	printJobReport(records)
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
	return checkJobs(records)
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

// followJobs prints each job's phase changes, completes each job's pods
// once they have run for the job's demo-run-for, and returns when every
// job has ended and every serving group is available.
func followJobs(ctx context.Context, c *cluster.Cluster, cr ctrlclient.Client, timeout time.Duration) (map[string]*jobRecord, error) {
	start := time.Now()
	records := map[string]*jobRecord{}
	for {
		if err := c.Healthy(); err != nil {
			return records, err
		}
		var jobs tesserav1alpha1.TrainingJobList
		if err := cr.List(ctx, &jobs, ctrlclient.InNamespace(demoNamespace)); err != nil {
			return records, err
		}
		done := true
		for i := range jobs.Items {
			j := &jobs.Items[i]
			rec := records[j.Name]
			if rec == nil {
				rec = &jobRecord{name: j.Name, queue: j.Spec.QueueName, submitted: j.CreationTimestamp.Time}
				records[j.Name] = rec
			}
			if err := observe(ctx, cr, j, rec, start); err != nil {
				return records, err
			}
			if j.Status.Phase != launcher.PhaseSucceeded && j.Status.Phase != launcher.PhaseFailed {
				done = false
			}
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
			return records, nil
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
	if strings.Contains(msg, "waiting for quota") {
		rec.waitedQuota = true
	}
	if strings.Contains(msg, "topology-fit") || strings.Contains(msg, "fit the free GPUs") {
		rec.waitedFit = true
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
		var pods corev1.PodList
		if err := cr.List(ctx, &pods, ctrlclient.InNamespace(j.Namespace), ctrlclient.MatchingLabels{launcher.LabelTrainingJob: j.Name}); err != nil {
			return err
		}
		rec.placement = nil
		for _, p := range pods.Items {
			rec.placement = append(rec.placement, fmt.Sprintf("%s[%s]", p.Spec.NodeName, p.Annotations[tesserav1alpha1.AnnotationGPUIDs]))
		}
		slices.Sort(rec.placement)
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

func printJobReport(records map[string]*jobRecord) {
	names := make([]string, 0, len(records))
	for n := range records {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return records[a].runningSince.Compare(records[b].runningSince) })
	fmt.Println("\nAdmission order and placement (the launcher's TrainingJobs):")
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "JOB\tQUEUE\tWAITED\tWHY IT WAITED\tPHASE\tPODS: NODE[GPU IDS]")
	for _, n := range names {
		r := records[n]
		why := "-"
		switch {
		case r.waitedQuota && r.waitedFit:
			why = "quota, then topology fit"
		case r.waitedQuota:
			why = "quota"
		case r.waitedFit:
			why = "topology fit"
		}
		waited := "-"
		if !r.runningSince.IsZero() {
			waited = r.runningSince.Sub(r.submitted).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, r.queue, waited, why, r.phase, strings.Join(r.placement, " "))
	}
	_ = w.Flush()
}

// checkJobs fails the demo unless every job succeeded, each ran with GPU
// IDs on the flavor's rack, and some job waited for quota.
func checkJobs(records map[string]*jobRecord) error {
	var errs []error
	quota := false
	for _, r := range records {
		if r.phase != launcher.PhaseSucceeded {
			errs = append(errs, fmt.Errorf("job %s ended %s, want Succeeded", r.name, r.phase))
		}
		for _, p := range r.placement {
			if strings.HasSuffix(p, "[]") {
				errs = append(errs, fmt.Errorf("job %s ran a pod without GPU IDs: %s", r.name, p))
			}
		}
		quota = quota || r.waitedQuota
	}
	if !quota {
		errs = append(errs, errors.New("no job waited for quota: the examples no longer exceed it"))
	}
	return errors.Join(errs...)
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
