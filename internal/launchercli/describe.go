package launchercli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/kueue/pkg/workload"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/launcher"
)

func runDescribe(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("describe", flag.ContinueOnError)
	var c common
	c.register(fs)
	rackLabel := fs.String("rack-label", "tessera.dev/rack", "node label naming a node's rack")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cl, obj, err := c.named(ctx, fs, "describe")
	if err != nil {
		return err
	}
	d := describer{ctx: ctx, cl: cl, out: out, rackLabel: *rackLabel}
	switch o := obj.(type) {
	case *tesserav1alpha1.TrainingJob:
		d.job(o)
	case *tesserav1alpha1.ServingGroup:
		d.group(o)
	}
	if err := d.pods(obj); err != nil {
		return err
	}
	if err := d.events(obj); err != nil {
		return err
	}
	return d.err
}

type describer struct {
	ctx       context.Context
	cl        ctrlclient.Client
	out       io.Writer
	rackLabel string
	err       error
	// all is every namespace's Workloads, listed once on first use.
	all []kueue.Workload
}

func (d *describer) workloads() ([]kueue.Workload, error) {
	if d.all == nil {
		var list kueue.WorkloadList
		if err := d.cl.List(d.ctx, &list); err != nil {
			return nil, err
		}
		d.all = list.Items
	}
	return d.all, nil
}

func (d *describer) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *describer) job(j *tesserav1alpha1.TrainingJob) {
	d.printf("TrainingJob:  %s/%s\n", j.Namespace, j.Name)
	msg := ""
	if c := apimeta.FindStatusCondition(j.Status.Conditions, string(j.Status.Phase)); c != nil {
		msg = fmt.Sprintf(" (%s): %s", c.Reason, c.Message)
	}
	d.printf("Phase:        %s%s\n", j.Status.Phase, msg)
	limit := int32(3)
	if j.Spec.BackoffLimit != nil {
		limit = *j.Spec.BackoffLimit
	}
	d.printf("Restarts:     %d (backoff limit %d)\n", j.Status.Restarts, limit)
	d.printf("Asks:         %d node(s) × %d GPUs\n", j.Spec.Nodes.Min, j.Spec.GPUsPerNode)
	d.workload(j.Namespace, j.Spec.QueueName, launcher.WorkloadName(j.Name))
}

func (d *describer) group(g *tesserav1alpha1.ServingGroup) {
	d.printf("ServingGroup: %s/%s\n", g.Namespace, g.Name)
	d.printf("Model:        %s (TP %d × PP %d)\n", g.Spec.Model, g.Spec.TensorParallelSize, max(g.Spec.PipelineParallelSize, 1))
	avail := ""
	if c := apimeta.FindStatusCondition(g.Status.Conditions, launcher.ConditionAvailable); c != nil {
		avail = fmt.Sprintf(" (%s: %s)", c.Reason, c.Message)
	}
	d.printf("Replicas:     %d wanted, %d created, %d ready%s\n", g.Spec.Replicas, g.Status.Replicas, g.Status.ReadyReplicas, avail)
	for i := range int(g.Spec.Replicas) {
		d.printf("Replica %d:\n", i)
		d.workload(g.Namespace, g.Spec.QueueName, launcher.ReplicaWorkloadName(g.Name, i))
	}
}

// workload prints the Kueue side: queue, ClusterQueue quota, the
// Workload's state, its admission checks and its place in the queue.
func (d *describer) workload(ns, queue, name string) {
	var lq kueue.LocalQueue
	if err := d.cl.Get(d.ctx, ctrlclient.ObjectKey{Namespace: ns, Name: queue}, &lq); err != nil {
		d.printf("  Queue:      %s (%v)\n", queue, err)
		return
	}
	cqName := string(lq.Spec.ClusterQueue)
	var cq kueue.ClusterQueue
	if err := d.cl.Get(d.ctx, ctrlclient.ObjectKey{Name: cqName}, &cq); err != nil {
		d.printf("  Queue:      %s → ClusterQueue %s (%v)\n", queue, cqName, err)
		return
	}
	cohort := ""
	if cq.Spec.CohortName != "" {
		cohort = fmt.Sprintf(" (cohort %s)", cq.Spec.CohortName)
	}
	d.printf("  Queue:      %s → ClusterQueue %s%s\n", queue, cqName, cohort)
	all, err := d.workloads()
	if err != nil {
		d.err = err
		return
	}
	d.printf("  Quota:      %s\n", quotaLine(&cq, all))
	var wl kueue.Workload
	if err := d.cl.Get(d.ctx, ctrlclient.ObjectKey{Namespace: ns, Name: name}, &wl); err != nil {
		d.printf("  Workload:   %s (%v)\n", name, err)
		return
	}
	var states []string
	for _, t := range []string{kueue.WorkloadQuotaReserved, kueue.WorkloadAdmitted, kueue.WorkloadEvicted, kueue.WorkloadFinished} {
		if c := apimeta.FindStatusCondition(wl.Status.Conditions, t); c != nil {
			states = append(states, fmt.Sprintf("%s=%s", t, c.Status))
		}
	}
	d.printf("  Workload:   %s: %s\n", wl.Name, strings.Join(states, " "))
	if c := apimeta.FindStatusCondition(wl.Status.Conditions, kueue.WorkloadQuotaReserved); c != nil && c.Status != "True" {
		d.printf("              %s\n", c.Message)
	}
	for _, check := range wl.Status.AdmissionChecks {
		d.printf("  Check:      %s: %s: %s\n", check.Name, check.State, check.Message)
	}
	if wl.Status.Admission == nil {
		pos, total, err := d.position(&wl, cqName)
		if err != nil {
			d.err = err
			return
		}
		d.printf("  Position:   %d of %d pending in ClusterQueue %s (by priority, then age)\n", pos, total, cqName)
	}
}

// quotaLine says, per flavor and resource, what the ClusterQueue's
// Workloads have reserved against its nominal quota, and what of it is
// borrowed. It sums the Workloads' admissions rather than reading the
// ClusterQueue's status, which Kueue writes some time after an admission.
func quotaLine(cq *kueue.ClusterQueue, workloads []kueue.Workload) string {
	type key struct {
		flavor   kueue.ResourceFlavorReference
		resource corev1.ResourceName
	}
	reserved := map[key]*resource.Quantity{}
	for i := range workloads {
		wl := &workloads[i]
		if !workload.HasQuotaReservation(wl) || wl.Status.Admission == nil || string(wl.Status.Admission.ClusterQueue) != cq.Name ||
			apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadFinished) {
			continue
		}
		for _, psa := range wl.Status.Admission.PodSetAssignments {
			for res, flavor := range psa.Flavors {
				q, ok := psa.ResourceUsage[res]
				if !ok {
					continue
				}
				k := key{flavor, res}
				if reserved[k] == nil {
					reserved[k] = resource.NewQuantity(0, q.Format)
				}
				reserved[k].Add(q)
			}
		}
	}
	var parts []string
	for _, rg := range cq.Spec.ResourceGroups {
		for _, f := range rg.Flavors {
			for _, r := range f.Resources {
				used := resource.NewQuantity(0, r.NominalQuota.Format)
				if q := reserved[key{f.Name, r.Name}]; q != nil {
					used = q
				}
				part := fmt.Sprintf("%s %s reserved of %s nominal (flavor %s)", r.Name, used.String(), r.NominalQuota.String(), f.Name)
				if used.Cmp(r.NominalQuota) > 0 {
					borrowed := used.DeepCopy()
					borrowed.Sub(r.NominalQuota)
					part += fmt.Sprintf(", %s borrowed from the cohort", borrowed.String())
				}
				parts = append(parts, part)
			}
		}
	}
	if len(parts) == 0 {
		return "no quota"
	}
	return strings.Join(parts, "; ")
}

// position is the Workload's place among the ClusterQueue's pending
// Workloads, in Kueue's order: priority, then creation.
func (d *describer) position(self *kueue.Workload, cq string) (int, int, error) {
	all, err := d.workloads()
	if err != nil {
		return 0, 0, err
	}
	queues := map[string]string{}
	var pending []*kueue.Workload
	for i := range all {
		wl := &all[i]
		if wl.Status.Admission != nil || apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadFinished) {
			continue
		}
		key := wl.Namespace + "/" + string(wl.Spec.QueueName)
		if _, ok := queues[key]; !ok {
			var lq kueue.LocalQueue
			if err := d.cl.Get(d.ctx, ctrlclient.ObjectKey{Namespace: wl.Namespace, Name: string(wl.Spec.QueueName)}, &lq); err == nil {
				queues[key] = string(lq.Spec.ClusterQueue)
			}
		}
		if queues[key] == cq {
			pending = append(pending, wl)
		}
	}
	slices.SortFunc(pending, func(a, b *kueue.Workload) int {
		pa, pb := int32(0), int32(0)
		if a.Spec.Priority != nil {
			pa = *a.Spec.Priority
		}
		if b.Spec.Priority != nil {
			pb = *b.Spec.Priority
		}
		return cmp.Or(cmp.Compare(pb, pa), a.CreationTimestamp.Compare(b.CreationTimestamp.Time))
	})
	for i, wl := range pending {
		if wl.UID == self.UID {
			return i + 1, len(pending), nil
		}
	}
	return 0, len(pending), nil
}

// pods prints where each pod runs: node, rack and GPU IDs.
func (d *describer) pods(obj ctrlclient.Object) error {
	pods, err := podsOf(d.ctx, d.cl, obj)
	if err != nil {
		return err
	}
	if len(pods) == 0 {
		d.printf("Pods:         none\n")
		return nil
	}
	d.printf("Pods:\n")
	w := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  NAME\tROLE\tPHASE\tNODE\tRACK\tGPU IDS")
	for _, p := range pods {
		rack := "-"
		if p.Spec.NodeName != "" {
			var n corev1.Node
			if err := d.cl.Get(d.ctx, ctrlclient.ObjectKey{Name: p.Spec.NodeName}, &n); err == nil {
				rack = cmp.Or(n.Labels[d.rackLabel], "-")
			}
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Labels[launcher.LabelRole], p.Status.Phase,
			cmp.Or(p.Spec.NodeName, "-"), rack, cmp.Or(p.Annotations[tesserav1alpha1.AnnotationGPUIDs], "-"))
	}
	return w.Flush()
}

// events prints the launcher's events about obj, oldest first.
func (d *describer) events(obj ctrlclient.Object) error {
	var list eventsv1.EventList
	if err := d.cl.List(d.ctx, &list, ctrlclient.InNamespace(obj.GetNamespace())); err != nil {
		return err
	}
	var mine []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.UID == obj.GetUID() {
			mine = append(mine, e)
		}
	}
	slices.SortFunc(mine, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
	if len(mine) == 0 {
		return nil
	}
	d.printf("Events:\n")
	for _, e := range mine {
		d.printf("  %s  %-8s %-14s %s\n", age(e.EventTime.Time), e.Type, e.Reason, e.Note)
	}
	return nil
}
