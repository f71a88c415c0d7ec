package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/hack/bench/benchkit"
	"tessera.dev/tessera/internal/gpunodes"
)

// podPlacement is where one pod of a job runs and which GPUs it holds.
type podPlacement struct {
	node *node
	gpus []int
}

type liveJob struct {
	pods      []string
	placement []podPlacement
}

// quality is one profile's placement quality over the replay.
type quality struct {
	profile string
	// jobs were submitted; unplaced did not bind within the timeout.
	jobs, unplaced int
	// islandChances counts multi-GPU single-node pods submitted while some
	// node had a free NVLink island big enough; islandHits of them got one.
	islandChances, islandHits int
	// gangs counts multi-node jobs; gangsMinRacks those on the fewest racks
	// that could hold them when submitted.
	gangs, gangsMinRacks int
	// slowdowns are the estimated all-reduce slowdowns of multi-GPU jobs
	// under the link-table model (model.go); ncclSlowdowns under the
	// measured nccl-tests figures (ncclmodel.go).
	slowdowns, ncclSlowdowns []float64
	// freeSlowdowns are the link-table slowdowns against the best
	// placement the free GPUs offered at arrival (bestFreeBusBandwidth).
	freeSlowdowns []float64
	// slow describes the placements of the jobs slowed 2× or more.
	slow []string
}

func (q quality) islandPercent() float64    { return percent(q.islandHits, q.islandChances) }
func (q quality) rackPercent() float64      { return percent(q.gangsMinRacks, q.gangs) }
func (q quality) meanSlowdown() float64     { return mean(q.slowdowns) }
func (q quality) meanNCCLSlowdown() float64 { return mean(q.ncclSlowdowns) }

func mean(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	sum := 0.0
	for _, v := range vs {
		sum += v
	}
	return sum / float64(len(vs))
}

func percent(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// podWatch keeps the latest state of the pods of one namespace.
type podWatch struct {
	mu   sync.Mutex
	pods map[string]*corev1.Pod
}

func (b *bench) watchPods(ctx context.Context, ns string) (*podWatch, error) {
	w := &podWatch{pods: map[string]*corev1.Pod{}}
	factory := informers.NewSharedInformerFactoryWithOptions(b.Client, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	set := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			w.mu.Lock()
			w.pods[p.Name] = p
			w.mu.Unlock()
		}
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, o any) { set(o) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				w.mu.Lock()
				delete(w.pods, p.Name)
				w.mu.Unlock()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("pod informer did not sync")
	}
	return w, nil
}

// waitFor polls until cond holds over the watched pods, or timeout. It
// fails at once if a component of the cluster (the scheduler) has exited.
func (w *podWatch) waitFor(ctx context.Context, timeout time.Duration, healthy func() error, cond func(map[string]*corev1.Pod) bool) error {
	return wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		if err := healthy(); err != nil {
			return false, err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		return cond(w.pods), nil
	})
}

// replay submits the jobs one at a time to profile and measures where they
// land. Before each job, random earlier jobs leave until the cluster is
// under the target utilization with the job added and the job fits by
// count, so every job is placeable and free capacity is scattered the way
// departures scatter it.
func (b *bench) replay(ctx context.Context, profile string, sizes []int) (quality, error) {
	q := quality{profile: profile}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns, err := b.Namespace(ctx)
	if err != nil {
		return q, err
	}
	w, err := b.watchPods(ctx, ns)
	if err != nil {
		return q, err
	}
	for _, n := range b.nodes {
		clear(n.used)
	}
	gang := profile != defaultProfile
	rng := rand.New(rand.NewPCG(b.o.seed, 1))
	total := 0
	for _, n := range b.nodes {
		total += len(n.used)
	}
	used := 0
	var live []*liveJob
	for j, size := range sizes {
		members, perPod := 1, size
		if size > 8 {
			members, perPod = (size+7)/8, 8
		}
		var gone []string
		for len(live) > 0 && (float64(used+size) > b.o.utilization*float64(total) || !b.fits(members, perPod)) {
			k := rng.IntN(len(live))
			for _, pp := range live[k].placement {
				for _, g := range pp.gpus {
					pp.node.used[g] = false
				}
				used -= len(pp.gpus)
			}
			gone = append(gone, live[k].pods...)
			live = slices.Delete(live, k, k+1)
		}
		if err := b.deletePods(ctx, ns, gone); err != nil {
			return q, err
		}
		if err := w.waitFor(ctx, time.Minute, b.Healthy, func(pods map[string]*corev1.Pod) bool {
			return !slices.ContainsFunc(gone, func(name string) bool { return pods[name] != nil })
		}); err != nil {
			return q, fmt.Errorf("waiting for departed pods to go: %w", err)
		}
		if !b.fits(members, perPod) {
			continue
		}
		q.jobs++
		islandChance := members == 1 && perPod > 1 && slices.ContainsFunc(b.nodes, func(n *node) bool { return n.largestFreeIsland() >= perPod })
		var bestFree float64
		var bestFreeAt []podPlacement
		if size > 1 {
			bestFree, bestFreeAt = b.bestFreeBusBandwidth(members, perPod)
		}
		fewestRacks := 0
		if members > 1 {
			fewestRacks = b.fewestRacks(members, perPod)
		}

		job := &liveJob{}
		group := ""
		if members > 1 && gang {
			group = fmt.Sprintf("job-%04d", j)
			if err := b.podGroup(ctx, ns, group, members); err != nil {
				return q, err
			}
		}
		for m := range members {
			name := fmt.Sprintf("job-%04d-%d", j, m)
			job.pods = append(job.pods, name)
			if err := b.createPod(ctx, ns, name, group, profile, perPod); err != nil {
				return q, err
			}
		}
		var bound []*corev1.Pod
		err := w.waitFor(ctx, b.o.jobTimeout, b.Healthy, func(pods map[string]*corev1.Pod) bool {
			bound = bound[:0]
			for _, name := range job.pods {
				p := pods[name]
				if p == nil || p.Spec.NodeName == "" || gang && p.Annotations[tesserav1alpha1.AnnotationGPUIDs] == "" {
					return false
				}
				bound = append(bound, p)
			}
			return true
		})
		if err := b.Healthy(); err != nil {
			return q, err
		}
		if err != nil {
			q.unplaced++
			benchkit.Progress("%s: job %d (%d GPUs) did not bind within %s; removing it", profile, j, size, b.o.jobTimeout)
			if err := b.deletePods(ctx, ns, job.pods); err != nil {
				return q, err
			}
			continue
		}
		for _, p := range bound {
			n := b.byName[p.Spec.NodeName]
			if n == nil {
				return q, fmt.Errorf("pod %s bound to unknown node %s", p.Name, p.Spec.NodeName)
			}
			gpus, err := b.gpusOf(p, n, gang, perPod)
			if err != nil {
				return q, err
			}
			for _, g := range gpus {
				if n.used[g] {
					return q, fmt.Errorf("pod %s got GPU %d of %s, which another pod holds", p.Name, g, n.name)
				}
				n.used[g] = true
			}
			used += len(gpus)
			job.placement = append(job.placement, podPlacement{node: n, gpus: gpus})
		}
		live = append(live, job)

		if islandChance && job.placement[0].node.sameIsland(job.placement[0].gpus) {
			q.islandHits++
		}
		if islandChance {
			q.islandChances++
		}
		if members > 1 {
			q.gangs++
			racks := map[string]bool{}
			for _, pp := range job.placement {
				racks[pp.node.rack] = true
			}
			if len(racks) <= fewestRacks {
				q.gangsMinRacks++
			}
		}
		if size > 1 {
			got := busBandwidth(job.placement)
			slowdown := b.ideal[size] / got
			q.slowdowns = append(q.slowdowns, slowdown)
			q.ncclSlowdowns = append(q.ncclSlowdowns, b.idealNCCL[size]/ncclBusBandwidth(job.placement))
			vsFree := bestFree / got
			q.freeSlowdowns = append(q.freeSlowdowns, vsFree)
			if slowdown >= 2 {
				s := fmt.Sprintf("job %d (%d GPUs): %.2f× (%.2f× of the best free at arrival: got %.0f GB/s, best free %.0f GB/s) on %s",
					j+1, size, slowdown, vsFree, got, bestFree, describePlacement(job.placement))
				if vsFree > 1 {
					s += "; best free: " + describePlacement(bestFreeAt)
				}
				q.slow = append(q.slow, s)
			}
		}
		if (j+1)%50 == 0 {
			benchkit.Progress("%s: %d/%d jobs, %d GPUs in use", profile, j+1, len(sizes), used)
		}
	}
	return q, b.DeleteAll(ctx, ns)
}

// gpusOf returns the GPUs a bound pod holds: Tessera's assignment, or for
// the default profile the device plugin's own pick, modelled as the best
// free set on the node (what the NVIDIA device plugin's preferred
// allocation aims for), which is generous to the default profile.
func (b *bench) gpusOf(p *corev1.Pod, n *node, tessera bool, k int) ([]int, error) {
	if tessera {
		ids, err := tesserav1alpha1.ParseGPUIDs(p.Annotations[tesserav1alpha1.AnnotationGPUIDs])
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", p.Name, err)
		}
		if len(ids) != k {
			return nil, fmt.Errorf("pod %s asked for %d GPUs and got %v", p.Name, k, ids)
		}
		return ids, nil
	}
	c, ok := n.topo.BestSet(n.free(), k)
	if !ok {
		return nil, fmt.Errorf("pod %s bound to %s, which has %d free GPUs for its %d", p.Name, n.name, len(n.free()), k)
	}
	return c.GPUs, nil
}

// fits reports whether members pods of perPod GPUs fit the free GPUs by
// count, each on its own node for a multi-node job.
func (b *bench) fits(members, perPod int) bool {
	room := 0
	for _, n := range b.nodes {
		if len(n.free()) >= perPod {
			room++
		}
	}
	return room >= members
}

// fewestRacks is the fewest racks whose nodes with perPod free GPUs can
// take members pods.
func (b *bench) fewestRacks(members, perPod int) int {
	perRack := map[string]int{}
	for _, n := range b.nodes {
		if len(n.free()) >= perPod {
			perRack[n.rack]++
		}
	}
	counts := slices.Sorted(func(yield func(int) bool) {
		for _, c := range perRack {
			if !yield(c) {
				return
			}
		}
	})
	racks := 0
	for i := len(counts) - 1; i >= 0 && members > 0; i-- {
		members -= counts[i]
		racks++
	}
	return racks
}

func (b *bench) createPod(ctx context.Context, ns, name, group, schedulerName string, gpus int) error {
	q := *resource.NewQuantity(int64(gpus), resource.DecimalSI)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			SchedulerName: schedulerName,
			Containers: []corev1.Container{{Name: "worker", Image: "trainer",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{gpunodes.ResourceGPU: q}}}},
		},
	}
	if group != "" {
		pod.Labels = map[string]string{schedv1alpha1.PodGroupLabel: group}
	}
	_, err := b.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	return err
}

// describePlacement says where a job's pods went: "l40s-3 (l40s-pcie, rack-5) GPUs [0 1]; …".
func describePlacement(p []podPlacement) string {
	parts := make([]string, len(p))
	for i, pp := range p {
		parts[i] = fmt.Sprintf("%s (%s, %s) GPUs %v", pp.node.name, pp.node.shape, pp.node.rack, pp.gpus)
	}
	return strings.Join(parts, "; ")
}
