package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/kueue/pkg/workload"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/launcher"
)

// gangRecord is what the demo saw of one Kueue Workload: a TrainingJob, or
// one ServingGroup replica. Times are when the demo first saw each state,
// at its sampling interval.
type gangRecord struct {
	queue, flavor        string
	seen, quotaAt, ranAt time.Time
	waitedQuota          bool
	// heldBy is the topology-fit check's first Pending message, if the
	// check held the gang with quota reserved.
	heldBy string
	pods   []podPlacement
}

// podPlacement is where one pod of a gang ran.
type podPlacement struct {
	pod, node, rack, gpuIDs, island string
}

// gangKey names a Workload's gang: trainingjob/NAME or servinggroup/NAME/REPLICA.
func gangKey(wl *kueue.Workload) string {
	key := strings.ToLower(wl.Labels[launcher.LabelOwnerKind]) + "/" + wl.Labels[launcher.LabelOwnerName]
	if r, ok := wl.Labels[launcher.LabelReplica]; ok {
		key += "/" + r
	}
	return key
}

// podGangKey names the gang a launcher pod belongs to, "" for other pods.
func podGangKey(p *corev1.Pod) string {
	if j := p.Labels[launcher.LabelTrainingJob]; j != "" {
		return "trainingjob/" + j
	}
	if g := p.Labels[launcher.LabelServingGroup]; g != "" {
		return "servinggroup/" + g + "/" + p.Labels[launcher.LabelReplica]
	}
	return ""
}

// gangState is where a gang stands in one sample.
type gangState int

const (
	waitingForQuota gangState = iota
	heldByFitCheck
	starting
	ran
)

// observeWorkload updates the gang's record from its Workload and says
// where the gang stands, before its pods are looked at.
func (r *gangRecord) observeWorkload(wl *kueue.Workload, now time.Time) gangState {
	r.queue = string(wl.Spec.QueueName)
	if !r.ranAt.IsZero() {
		return ran
	}
	if !workload.HasQuotaReservation(wl) {
		r.waitedQuota = true
		return waitingForQuota
	}
	if r.quotaAt.IsZero() {
		r.quotaAt = now
	}
	if adm := wl.Status.Admission; adm != nil && len(adm.PodSetAssignments) > 0 {
		for _, f := range adm.PodSetAssignments[0].Flavors {
			r.flavor = string(f)
		}
	}
	for _, check := range wl.Status.AdmissionChecks {
		if check.State == kueue.CheckStatePending && strings.HasPrefix(check.Message, "needs ") {
			if r.heldBy == "" {
				r.heldBy = check.Message
			}
			return heldByFitCheck
		}
	}
	return starting
}

// observePods records the gang's placement the first time all its pods run.
func (r *gangRecord) observePods(pods []*corev1.Pod, nodes map[string]*corev1.Node, topologies map[string]*tesserav1alpha1.GPUNodeTopology, now time.Time) {
	if !r.ranAt.IsZero() || len(pods) == 0 {
		return
	}
	for _, p := range pods {
		if p.Status.Phase != corev1.PodRunning {
			return
		}
	}
	r.ranAt = now
	for _, p := range pods {
		place := podPlacement{pod: p.Name, node: p.Spec.NodeName, gpuIDs: p.Annotations[tesserav1alpha1.AnnotationGPUIDs]}
		if n := nodes[p.Spec.NodeName]; n != nil {
			place.rack = n.Labels[gpunodes.LabelRack]
		}
		place.island = islandOf(topologies[p.Spec.NodeName], place.gpuIDs)
		r.pods = append(r.pods, place)
	}
	slices.SortFunc(r.pods, func(a, b podPlacement) int { return strings.Compare(a.pod, b.pod) })
}

// islandOf says which NVLink island holds the GPUs: "NVSwitch island
// [0-7]" when one island holds them all, otherwise how they are split.
func islandOf(topo *tesserav1alpha1.GPUNodeTopology, gpuIDs string) string {
	ids, err := tesserav1alpha1.ParseGPUIDs(gpuIDs)
	if topo == nil || err != nil || len(ids) == 0 {
		return "-"
	}
	held := map[int]bool{}
	for _, id := range ids {
		held[id] = true
	}
	var touched []tesserav1alpha1.GPUIsland
	for _, is := range topo.Status.Islands {
		if slices.ContainsFunc(is.GPUs, func(g int32) bool { return held[int(g)] }) {
			touched = append(touched, is)
		}
	}
	switch {
	case len(touched) == 1 && touched[0].Kind != "None":
		return fmt.Sprintf("%s island of %d", touched[0].Kind, len(touched[0].GPUs))
	case slices.ContainsFunc(touched, func(is tesserav1alpha1.GPUIsland) bool { return is.Kind != "None" }):
		return fmt.Sprintf("split over %d islands", len(touched))
	}
	return "no NVLink (PCIe)"
}

// printGangReport prints the admission order, each gang's waits and its
// placement, pod by pod.
func printGangReport(out io.Writer, gangs map[string]*gangRecord) error {
	keys := make([]string, 0, len(gangs))
	for k := range gangs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := gangs[a].ranAt.Compare(gangs[b].ranAt); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	fmt.Fprintln(out, "\nAdmission order, waits and placement (one row per pod; waits from when the demo first saw the Workload):")
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "#\tGANG\tQUEUE\tFLAVOR\tQUOTA WAIT\tFIT WAIT\tPOD\tNODE\tRACK\tGPU IDS\tNVLINK")
	for i, k := range keys {
		r := gangs[k]
		quotaWait, fitWait := "-", "-"
		if !r.quotaAt.IsZero() {
			quotaWait = r.quotaAt.Sub(r.seen).Round(100 * time.Millisecond).String()
		}
		if !r.ranAt.IsZero() {
			fitWait = r.ranAt.Sub(r.quotaAt).Round(100 * time.Millisecond).String()
		}
		if len(r.pods) == 0 {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t(never ran)\t\t\t\t\n", i+1, k, r.queue, orDash(r.flavor), quotaWait, fitWait)
			continue
		}
		for j, p := range r.pods {
			if j == 0 {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t", i+1, k, r.queue, orDash(r.flavor), quotaWait, fitWait)
			} else {
				fmt.Fprint(w, "\t\t\t\t\t\t")
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.pod, p.node, orDash(p.rack), orDash(p.gpuIDs), p.island)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "FIT WAIT is from quota reserved to the whole gang running: the topology-fit check, then scheduling and binding.")
	for _, k := range keys {
		if r := gangs[k]; r.heldBy != "" {
			fmt.Fprintf(out, "%s was held by the topology-fit check with its quota reserved: %s\n", k, r.heldBy)
		}
	}
	return nil
}

// checkGangs fails the demo unless every gang ran with GPU IDs, each pod on
// one NVLink island where its node has NVLink, some gang waited for quota
// and some was held by the topology-fit check.
func checkGangs(gangs map[string]*gangRecord) error {
	var errs []error
	quota, held := false, false
	for k, r := range gangs {
		if r.ranAt.IsZero() {
			errs = append(errs, fmt.Errorf("%s never ran", k))
		}
		for _, p := range r.pods {
			if p.gpuIDs == "" {
				errs = append(errs, fmt.Errorf("%s ran pod %s without GPU IDs", k, p.pod))
			}
			if strings.HasPrefix(p.island, "split") {
				errs = append(errs, fmt.Errorf("%s pod %s has GPUs %s %s", k, p.pod, p.gpuIDs, p.island))
			}
		}
		quota = quota || r.waitedQuota
		held = held || r.heldBy != ""
	}
	if !quota {
		errs = append(errs, errors.New("no gang waited for quota: the examples no longer exceed it"))
	}
	if !held {
		errs = append(errs, errors.New("the topology-fit check held no gang: the notebooks no longer block pretrain"))
	}
	return errors.Join(errs...)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
