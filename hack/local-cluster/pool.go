package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"
	kueue "sigs.k8s.io/kueue/apis/kueue/v1beta2"
	"sigs.k8s.io/kueue/pkg/workload"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/internal/gpunodes"
	"tessera.dev/tessera/pkg/fragmentation"
	fragplugin "tessera.dev/tessera/pkg/plugins/fragmentation"
)

// poolSampler follows the launcher examples on the training pool, one
// sample per call: each gang's admission and placement, the quota each
// ClusterQueue reserves, the GPUs pods hold, and how much of the free GPU
// capacity the examples' pod shapes could not use.
type poolSampler struct {
	cr    ctrlclient.Client
	start time.Time
	gangs map[string]*gangRecord
	// mix holds each Workload's pod shapes, weighted by pod count: the
	// workload mix fragmentation is measured against.
	mix      map[string][]fragmentation.Shape
	quota    map[queueFlavor]*quotaUse
	products map[string]*productUse
	samples  int
	// fullest and mostFragmented are the samples with the most GPUs
	// allocated and the most fragmented, node by node.
	fullest, mostFragmented poolSnapshot
	lastProgress            string
	// productQuota is the cohort's GPU quota per GPU product (the flavors'
	// node labels name the product).
	productQuota map[string]int64
	// violations are the samples in which quota did not hold.
	violations []string
}

type queueFlavor struct{ queue, flavor string }

// poolSnapshot is the pool in one sample.
type poolSnapshot struct {
	at              time.Duration
	allocated       int
	fragmentedMilli float64
	nodes           []nodeUse
}

// quotaUse is one ClusterQueue's quota of one flavor's GPUs and the most
// it reserved.
type quotaUse struct {
	nominal, peakReserved, peakBorrowed int64
}

// productUse sums, over samples, one GPU product's GPUs on the pool.
type productUse struct {
	gpus            int
	allocated, free int
	// launched is the GPUs held by the launcher's pods, which quota covers
	// (the notebooks' are not).
	launched        int
	peakAllocated   int
	fragmentedMilli float64
}

// nodeUse is one pool node in one sample.
type nodeUse struct {
	name, rack, product string
	gpus                int
	free                []int
	largestFreeIsland   int
	fragmentedMilli     float64
}

func newPoolSampler(cr ctrlclient.Client) *poolSampler {
	return &poolSampler{cr: cr, start: time.Now(), gangs: map[string]*gangRecord{}, mix: map[string][]fragmentation.Shape{},
		quota: map[queueFlavor]*quotaUse{}, products: map[string]*productUse{}}
}

// sample reads the cluster once and folds it into the report.
func (s *poolSampler) sample(ctx context.Context) error {
	now := time.Now()
	var nodeList corev1.NodeList
	var topoList tesserav1alpha1.GPUNodeTopologyList
	var podList corev1.PodList
	var wlList kueue.WorkloadList
	var cqList kueue.ClusterQueueList
	var rfList kueue.ResourceFlavorList
	for _, l := range []ctrlclient.ObjectList{&nodeList, &topoList, &cqList, &rfList} {
		if err := s.cr.List(ctx, l); err != nil {
			return err
		}
	}
	for _, l := range []ctrlclient.ObjectList{&podList, &wlList} {
		if err := s.cr.List(ctx, l, ctrlclient.InNamespace(demoNamespace)); err != nil {
			return err
		}
	}
	nodes := map[string]*corev1.Node{}
	for i := range nodeList.Items {
		nodes[nodeList.Items[i].Name] = &nodeList.Items[i]
	}
	topologies := map[string]*tesserav1alpha1.GPUNodeTopology{}
	for i := range topoList.Items {
		topologies[topoList.Items[i].Name] = &topoList.Items[i]
	}
	podsByGang := map[string][]*corev1.Pod{}
	podsByNode := map[string][]*corev1.Pod{}
	for i := range podList.Items {
		p := &podList.Items[i]
		if k := podGangKey(p); k != "" {
			podsByGang[k] = append(podsByGang[k], p)
		}
		if p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			podsByNode[p.Spec.NodeName] = append(podsByNode[p.Spec.NodeName], p)
		}
	}
	states := map[gangState]int{}
	for i := range wlList.Items {
		wl := &wlList.Items[i]
		k := gangKey(wl)
		r := s.gangs[k]
		if r == nil {
			r = &gangRecord{seen: now}
			s.gangs[k] = r
			s.mix[wl.Name] = podSetShapes(wl.Spec.PodSets)
		}
		states[r.observeWorkload(wl, now)]++
		r.observePods(podsByGang[k], nodes, topologies, now)
	}
	s.observeQuota(cqList.Items, rfList.Items, wlList.Items, now)
	allocated := s.observeNodes(nodes, topologies, podsByNode, now)
	line := fmt.Sprintf("pool: %d GPUs allocated; gangs: %d waiting for quota, %d held by the topology-fit check, %d starting, %d ran",
		allocated, states[waitingForQuota], states[heldByFitCheck], states[starting], states[ran])
	if line != s.lastProgress {
		fmt.Printf("[%5.1fs] %s\n", now.Sub(s.start).Seconds(), line)
		s.lastProgress = line
	}
	return nil
}

// podSetShapes is a Workload's pods as fragmentation tasks, read as the
// GPUFragmentation plugin reads a pod, with the GPU product its node
// selector asks for as the allowed model.
func podSetShapes(podSets []kueue.PodSet) []fragmentation.Shape {
	var shapes []fragmentation.Shape
	for _, ps := range podSets {
		t, err := fragplugin.TaskOf(&corev1.Pod{ObjectMeta: ps.Template.ObjectMeta, Spec: ps.Template.Spec})
		if err != nil || t.GPUs == 0 {
			continue
		}
		if product := ps.Template.Spec.NodeSelector[gpunodes.LabelGPUProduct]; product != "" {
			t.Models = []string{product}
		}
		shapes = append(shapes, fragmentation.Shape{Task: t, Weight: float64(ps.Count)})
	}
	return shapes
}

// observeQuota records the GPUs each ClusterQueue reserves per flavor, and
// checks that the queues together never reserve more of a flavor than their
// nominal quotas (the demo's queues share one cohort). Reservations are
// summed from the Workloads of one List, not read from the ClusterQueues'
// status: Kueue writes each queue's status on its own, so two queues'
// statuses can be from different moments.
func (s *poolSampler) observeQuota(cqs []kueue.ClusterQueue, flavors []kueue.ResourceFlavor, workloads []kueue.Workload, now time.Time) {
	nominal, cohortReserved := map[string]int64{}, map[string]int64{}
	for _, cq := range cqs {
		for _, rg := range cq.Spec.ResourceGroups {
			for _, f := range rg.Flavors {
				for _, r := range f.Resources {
					if r.Name == gpunodes.ResourceGPU {
						s.quotaUse(cq.Name, string(f.Name)).nominal = r.NominalQuota.Value()
						nominal[string(f.Name)] += r.NominalQuota.Value()
					}
				}
			}
		}
	}
	reserved := map[queueFlavor]int64{}
	for i := range workloads {
		wl := &workloads[i]
		if !workload.HasQuotaReservation(wl) || apimeta.IsStatusConditionTrue(wl.Status.Conditions, kueue.WorkloadFinished) {
			continue
		}
		for _, psa := range wl.Status.Admission.PodSetAssignments {
			flavor, ok := psa.Flavors[gpunodes.ResourceGPU]
			if !ok {
				continue
			}
			gpus := psa.ResourceUsage.Name(gpunodes.ResourceGPU, resource.DecimalSI).Value()
			reserved[queueFlavor{string(wl.Status.Admission.ClusterQueue), string(flavor)}] += gpus
			cohortReserved[string(flavor)] += gpus
		}
	}
	for k, n := range reserved {
		q := s.quotaUse(k.queue, k.flavor)
		q.peakReserved = max(q.peakReserved, n)
		q.peakBorrowed = max(q.peakBorrowed, n-q.nominal)
	}
	s.productQuota = map[string]int64{}
	for _, rf := range flavors {
		if product := rf.Spec.NodeLabels[gpunodes.LabelGPUProduct]; product != "" {
			s.productQuota[product] += nominal[rf.Name]
		}
	}
	for flavor, n := range cohortReserved {
		if n > nominal[flavor] {
			s.violations = append(s.violations, fmt.Sprintf("at %s the queues reserved %d GPUs of flavor %s, over their quota of %d",
				now.Sub(s.start).Round(time.Second), n, flavor, nominal[flavor]))
		}
	}
}

func (s *poolSampler) quotaUse(queue, flavor string) *quotaUse {
	k := queueFlavor{queue, flavor}
	if s.quota[k] == nil {
		s.quota[k] = &quotaUse{}
	}
	return s.quota[k]
}

// observeNodes measures the pool's GPUs: held by pods (their GPU IDs), free
// (allocatable and not held), and fragmented: the expected free capacity
// the examples' pod shapes could not use, by FGD's measure (Weng et al.,
// ATC '23). It returns the GPUs allocated.
func (s *poolSampler) observeNodes(nodes map[string]*corev1.Node, topologies map[string]*tesserav1alpha1.GPUNodeTopology,
	podsByNode map[string][]*corev1.Pod, now time.Time) int {
	var mix []fragmentation.Shape
	for _, name := range slices.Sorted(maps.Keys(s.mix)) {
		mix = append(mix, s.mix[name]...)
	}
	var use []nodeUse
	allocated, fragmented := 0, 0.0
	byProduct := map[string]productUse{}
	for _, name := range slices.Sorted(maps.Keys(nodes)) {
		n, topo := nodes[name], topologies[name]
		if n.Labels[labelPool] == "" || topo == nil {
			continue
		}
		u := nodeUse{name: name, rack: n.Labels[gpunodes.LabelRack], product: n.Labels[gpunodes.LabelGPUProduct], gpus: int(topo.Status.GPUCount)}
		freeCPU := n.Status.Allocatable.Cpu().MilliValue()
		held, launched := map[int]bool{}, 0
		for _, p := range podsByNode[name] {
			req := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
			freeCPU -= req.Cpu().MilliValue()
			ids, _ := tesserav1alpha1.ParseGPUIDs(p.Annotations[tesserav1alpha1.AnnotationGPUIDs])
			for _, id := range ids {
				held[id] = true
			}
			if podGangKey(p) != "" {
				launched += len(ids)
			}
		}
		frag := fragmentation.Node{FreeCPUMilli: freeCPU, FreeGPUMilli: make([]int64, u.gpus), Model: u.product}
		for _, id := range topo.Status.Allocatable {
			if !held[int(id)] && int(id) < u.gpus {
				u.free = append(u.free, int(id))
				frag.FreeGPUMilli[id] = fragmentation.MilliGPU
			}
		}
		u.largestFreeIsland = largestFreeIsland(topo.Status.Islands, u.free)
		u.fragmentedMilli = frag.Expected(shapesFor(mix, u.product), fragmentation.MeasureFGD)
		use = append(use, u)

		sum := byProduct[u.product]
		sum.gpus += u.gpus
		sum.allocated += len(held)
		sum.launched += launched
		fragmented += u.fragmentedMilli
		sum.free += len(u.free)
		sum.fragmentedMilli += u.fragmentedMilli
		byProduct[u.product] = sum
		allocated += len(held)
	}
	for product, sum := range byProduct {
		p := s.products[product]
		if p == nil {
			p = &productUse{}
			s.products[product] = p
		}
		p.gpus = sum.gpus
		p.allocated += sum.allocated
		p.free += sum.free
		p.fragmentedMilli += sum.fragmentedMilli
		p.peakAllocated = max(p.peakAllocated, sum.allocated)
		if limit, ok := s.productQuota[product]; ok && int64(sum.launched) > limit {
			s.violations = append(s.violations, fmt.Sprintf("at %s the launcher's pods held %d %s GPUs, over the cohort's quota of %d",
				now.Sub(s.start).Round(time.Second), sum.launched, product, limit))
		}
	}
	s.samples++
	snap := poolSnapshot{at: now.Sub(s.start), allocated: allocated, fragmentedMilli: fragmented, nodes: use}
	if s.fullest.nodes == nil || allocated > s.fullest.allocated {
		s.fullest = snap
	}
	if s.mostFragmented.nodes == nil || fragmented > s.mostFragmented.fragmentedMilli {
		s.mostFragmented = snap
	}
	return allocated
}

// shapesFor is the mix's shapes that may use GPUs of the product: a node's
// fragmentation counts what could be placed on it, so an idle H100 node is
// not fragmented for want of L40S.
func shapesFor(mix []fragmentation.Shape, product string) []fragmentation.Shape {
	var out []fragmentation.Shape
	for _, s := range mix {
		if len(s.Models) == 0 || slices.Contains(s.Models, product) {
			out = append(out, s)
		}
	}
	return out
}

// largestFreeIsland is the most free GPUs in one NVLink island.
func largestFreeIsland(islands []tesserav1alpha1.GPUIsland, free []int) int {
	best := 0
	for _, is := range islands {
		if is.Kind == "None" {
			continue
		}
		n := 0
		for _, g := range is.GPUs {
			if slices.Contains(free, int(g)) {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// printReport prints the gangs, quota use per queue, GPU allocation and
// fragmentation on the pool, and the pool node by node at its fullest.
func (s *poolSampler) printReport(out io.Writer) error {
	if err := printGangReport(out, s.gangs); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nQuota use per ClusterQueue (nvidia.com/gpu; peaks over the run; BORROWED is reserved over nominal, from the cohort):")
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "QUEUE\tFLAVOR\tNOMINAL\tPEAK RESERVED\tPEAK BORROWED")
	keys := slices.SortedFunc(maps.Keys(s.quota), func(a, b queueFlavor) int {
		return strings.Compare(a.queue+"/"+a.flavor, b.queue+"/"+b.flavor)
	})
	for _, k := range keys {
		q := s.quota[k]
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\n", k.queue, k.flavor, q.nominal, q.peakReserved, q.peakBorrowed)
	}
	if err := w.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nGPU allocation on the training pool (%d samples over %s; means over samples):\n", s.samples, time.Since(s.start).Round(time.Second))
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "GPU PRODUCT\tGPUS\tCOHORT QUOTA\tPEAK ALLOCATED\tMEAN ALLOCATED\tMEAN FREE\tMEAN FRAGMENTED\tFRAGMENTED / FREE")
	for _, product := range slices.Sorted(maps.Keys(s.products)) {
		p, n := s.products[product], float64(max(s.samples, 1))
		share := "-"
		if p.free > 0 {
			share = fmt.Sprintf("%.0f%%", 100*p.fragmentedMilli/1000/float64(p.free))
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d (%.0f%%)\t%.1f (%.0f%%)\t%.1f\t%.1f\t%s\n", product, p.gpus, s.productQuota[product],
			p.peakAllocated, 100*float64(p.peakAllocated)/float64(max(p.gpus, 1)),
			float64(p.allocated)/n, 100*float64(p.allocated)/n/float64(max(p.gpus, 1)),
			float64(p.free)/n, p.fragmentedMilli/1000/n, share)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "FRAGMENTED is the free GPU capacity the examples' pod shapes could not use, by FGD's measure (Weng et al., ATC '23):")
	fmt.Fprintln(out, "each shape's unusable free GPUs on each node, weighted by the shape's share of the submitted pods.")

	if err := s.fullest.print(out, "at its fullest"); err != nil {
		return err
	}
	return s.mostFragmented.print(out, "at its most fragmented")
}

// print prints the snapshot node by node.
func (p poolSnapshot) print(out io.Writer, title string) error {
	fmt.Fprintf(out, "\nThe pool %s (at %s: %d GPUs allocated, %.1f fragmented):\n", title, p.at.Round(100*time.Millisecond), p.allocated, p.fragmentedMilli/1000)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tRACK\tGPU PRODUCT\tALLOCATED\tFREE GPU IDS\tLARGEST FREE NVLINK ISLAND\tFRAGMENTED")
	for _, u := range p.nodes {
		ids := "-"
		if len(u.free) > 0 {
			ids = tesserav1alpha1.FormatGPUIDs(u.free)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%s\t%d\t%.1f\n", u.name, u.rack, u.product, u.gpus-len(u.free), u.gpus, ids, u.largestFreeIsland, u.fragmentedMilli/1000)
	}
	return w.Flush()
}

// check fails the demo if quota did not hold in some sample or a gang did
// not run as it should.
func (s *poolSampler) check() error {
	var errs []error
	for _, v := range s.violations {
		errs = append(errs, errors.New(v))
	}
	return errors.Join(append(errs, checkGangs(s.gangs))...)
}
