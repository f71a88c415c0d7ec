package churn

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	schedv1alpha1 "sigs.k8s.io/scheduler-plugins/apis/scheduling/v1alpha1"

	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
)

// partialSlack is how long past its timeout a partly bound gang may take to
// be torn down: the scheduler's sweep (5 s), a restart, the evictions.
const partialSlack = 30 * time.Second

// summary is what a run did and found.
type summary struct {
	steps, evictions, restarts, teardowns, suspects int
	violations                                      []string
}

func (s *summary) add(o summary) {
	s.steps += o.steps
	s.evictions += o.evictions
	s.restarts += o.restarts
	s.teardowns += o.teardowns
	s.suspects += o.suspects
	s.violations = append(s.violations, o.violations...)
}

func (s summary) String() string {
	return fmt.Sprintf("%d steps, %d evictions (%d suspect), %d partly bound gangs torn down, %d scheduler restarts, %d violations",
		s.steps, s.evictions, s.suspects, s.teardowns, s.restarts, len(s.violations))
}

// checker reads the cluster back after every step.
type checker struct {
	w       *world
	summary summary
	step    int
	// partialSince is when each gang was first seen partly bound.
	partialSince map[string]time.Time
	// seenEvents are the Preempted events already checked.
	seenEvents sets.Set[types.UID]
	// before is the cluster as the step began (see checkEvictions).
	before clusterState
	// budgets are the disruptions each PodDisruptionBudget allowed when the
	// step began.
	budgets       map[string]int32
	budgetsBefore map[string]int32
	log           []string
	reported      sets.Set[string]
	// heldDuring are the pods seen holding a node at any time since the
	// step began (a watch sees bindings the step's end no longer shows:
	// pods bound and then evicted or deleted within the step).
	mu         sync.Mutex
	heldDuring map[string]corev1.Pod
	// nominatedDuring are, node by node, the pods seen nominated to it at
	// any time since the step began.
	nominatedDuring map[string]sets.Set[string]
}

func newChecker(w *world) *checker {
	c := &checker{w: w, partialSince: map[string]time.Time{}, seenEvents: sets.New[types.UID](), budgets: map[string]int32{},
		reported: sets.New[string](), heldDuring: map[string]corev1.Pod{}, nominatedDuring: map[string]sets.Set[string]{}}
	factory := informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace(w.ns))
	informer := factory.Core().V1().Pods().Informer()
	record := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if holdsNode(p) {
			c.heldDuring[p.Name] = *p.DeepCopy()
		}
		c.noteNomination(p)
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, obj any) { record(obj) }}); err != nil {
		w.t.Fatal(err)
	}
	factory.Start(w.ctx.Done())
	factory.WaitForCacheSync(w.ctx.Done())
	return c
}

func (c *checker) logf(format string, args ...any) {
	c.log = append(c.log, fmt.Sprintf("step %d: ", c.step)+fmt.Sprintf(format, args...))
}

// violation reports a broken invariant, once: the same state seen again
// at later steps is not counted again.
func (c *checker) violation(format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	if c.reported.Has(what) {
		return
	}
	c.reported.Insert(what)
	v := fmt.Sprintf("seed %d step %d: ", c.w.seed, c.step) + what
	c.summary.violations = append(c.summary.violations, v)
	// What led up to it, for the report.
	start := max(len(c.log)-5, 0)
	c.w.t.Logf("%s\n  after: %s", v, strings.Join(c.log[start:], "\n         "))
}

type clusterState struct {
	pods       []corev1.Pod
	nodes      map[string]*corev1.Node
	pgs        []schedv1alpha1.PodGroup
	topologies map[string]*tesserav1alpha1.GPUNodeTopology
}

func (c *checker) read() clusterState {
	ctx := c.w.ctx
	var st clusterState
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := env.Client.CoreV1().Pods(c.w.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		nodes, err := env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		var pgs schedv1alpha1.PodGroupList
		if err := env.CR.List(ctx, &pgs, ctrlclient.InNamespace(c.w.ns)); err != nil {
			return false, nil
		}
		var topos tesserav1alpha1.GPUNodeTopologyList
		if err := env.CR.List(ctx, &topos); err != nil {
			return false, nil
		}
		st = clusterState{pods: pods.Items, nodes: map[string]*corev1.Node{}, pgs: pgs.Items, topologies: map[string]*tesserav1alpha1.GPUNodeTopology{}}
		for i := range nodes.Items {
			st.nodes[nodes.Items[i].Name] = &nodes.Items[i]
		}
		for i := range topos.Items {
			st.topologies[topos.Items[i].Name] = &topos.Items[i]
		}
		return true, nil
	})
	if err != nil {
		c.w.t.Fatalf("reading the cluster: %v", err)
	}
	return st
}

func (c *checker) beforeStep() {
	// The records restart before the read, so that nothing the watch
	// delivers while the cluster is read is lost.
	c.mu.Lock()
	c.heldDuring = map[string]corev1.Pod{}
	c.nominatedDuring = map[string]sets.Set[string]{}
	c.mu.Unlock()
	c.before = c.read()
	c.mu.Lock()
	for _, p := range c.before.pods {
		if _, seen := c.heldDuring[p.Name]; !seen && holdsNode(&p) {
			c.heldDuring[p.Name] = p
		}
		c.noteNomination(&p)
	}
	c.mu.Unlock()
	c.budgetsBefore = map[string]int32{}
	for k, v := range c.budgets {
		c.budgetsBefore[k] = v
	}
}

// noteNomination records the node p is nominated to, if any (c.mu held).
func (c *checker) noteNomination(p *corev1.Pod) {
	node := p.Status.NominatedNodeName
	if node == "" {
		return
	}
	if c.nominatedDuring[node] == nil {
		c.nominatedDuring[node] = sets.New[string]()
	}
	c.nominatedDuring[node].Insert(p.Name)
}

func (c *checker) afterStep(step int) {
	c.step = step
	c.summary.steps++
	c.summary.restarts = c.w.restarts
	st := c.read()
	c.checkGPUs(st)
	c.checkPartialGangs(st, time.Now())
	c.checkEvictions(st)
	c.countTeardowns()
}

// countTeardowns counts the scheduler's new PartlyBound events: gangs it
// tore down (a path the checks above only see when it fails).
func (c *checker) countTeardowns() {
	events, err := env.Client.CoreV1().Events(c.w.ns).List(c.w.ctx, metav1.ListOptions{FieldSelector: "reason=PartlyBound"})
	if err != nil {
		return
	}
	for _, e := range events.Items {
		if !c.seenEvents.Has(e.UID) {
			c.seenEvents.Insert(e.UID)
			c.summary.teardowns++
		}
	}
}

// finalWait lets every gang partly bound at the end run out its timeout,
// then checks once more.
func (c *checker) finalWait() {
	deadline := time.Now().Add(gangTimeoutSeconds*time.Second + partialSlack)
	_ = wait.PollUntilContextTimeout(c.w.ctx, time.Second, time.Until(deadline)+time.Second, true, func(context.Context) (bool, error) {
		return len(partlyBound(c.read())) == 0 || time.Now().After(deadline), nil
	})
	c.checkPartialGangs(c.read(), time.Now())
	c.checkEvictions(c.read())
}

// holds reports what a pod holds on its node: the GPU indexes and milli of
// each, from its tessera.dev/gpu-ids and tessera.dev/gpu-milli.
func holds(p *corev1.Pod) (ids []int, milli int64, err error) {
	value, ok := p.Annotations[tesserav1alpha1.AnnotationGPUIDs]
	if !ok {
		return nil, 0, nil
	}
	if ids, err = tesserav1alpha1.ParseGPUIDs(value); err != nil {
		return nil, 0, err
	}
	milli = 1000
	if s, ok := p.Annotations[tesserav1alpha1.AnnotationGPUMilli]; ok {
		if milli, err = tesserav1alpha1.ParseGPUMilli(s); err != nil {
			return nil, 0, err
		}
	}
	return ids, milli, nil
}

func asksForGPUs(p *corev1.Pod) bool {
	if _, share := p.Annotations[tesserav1alpha1.AnnotationGPUMilli]; share {
		return true
	}
	for _, ctr := range p.Spec.Containers {
		if q, ok := ctr.Resources.Requests["nvidia.com/gpu"]; ok && !q.IsZero() {
			return true
		}
	}
	return false
}

// holdsNode reports whether a pod holds its node's resources: bound and not
// finished (terminating pods hold them until they are gone).
func holdsNode(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// checkGPUs: no GPU held by two whole-GPU pods, none past 1000 milli, and
// every bound GPU pod with its GPUs recorded.
func (c *checker) checkGPUs(st clusterState) {
	use := map[string]map[int]int64{}
	holders := map[string]map[int][]string{}
	for i := range st.pods {
		p := &st.pods[i]
		if !holdsNode(p) || !asksForGPUs(p) {
			continue
		}
		ids, milli, err := holds(p)
		if err != nil || len(ids) == 0 {
			c.violation("pod %s bound to %s without valid GPU ids (%v)", p.Name, p.Spec.NodeName, err)
			continue
		}
		if use[p.Spec.NodeName] == nil {
			use[p.Spec.NodeName], holders[p.Spec.NodeName] = map[int]int64{}, map[int][]string{}
		}
		for _, id := range ids {
			use[p.Spec.NodeName][id] += milli
			holders[p.Spec.NodeName][id] = append(holders[p.Spec.NodeName][id], p.Name)
		}
	}
	for node, gpus := range use {
		for id, milli := range gpus {
			if milli > 1000 {
				c.violation("GPU %d of %s holds %d milli-GPUs: %v", id, node, milli, holders[node][id])
			}
		}
	}
}

// gangState counts a gang's members: bound (holding a node, not
// terminating) and pending.
type gangState struct {
	pg             *schedv1alpha1.PodGroup
	bound, pending int
}

func partlyBound(st clusterState) map[string]gangState {
	out := map[string]gangState{}
	for i := range st.pgs {
		pg := &st.pgs[i]
		g := gangState{pg: pg}
		for j := range st.pods {
			p := &st.pods[j]
			if p.Labels[schedv1alpha1.PodGroupLabel] != pg.Name || p.DeletionTimestamp != nil {
				continue
			}
			switch {
			case holdsNode(p):
				g.bound++
			case p.Spec.NodeName == "":
				g.pending++
			}
		}
		if g.bound > 0 && g.bound < int(pg.Spec.MinMember) && g.pending > 0 {
			out[pg.Name] = g
		}
	}
	return out
}

// checkPartialGangs: no gang partly bound for longer than its timeout
// (plus the time a teardown takes).
func (c *checker) checkPartialGangs(st clusterState, now time.Time) {
	partial := partlyBound(st)
	for name := range c.partialSince {
		if _, still := partial[name]; !still {
			delete(c.partialSince, name)
		}
	}
	for name, g := range partial {
		since, seen := c.partialSince[name]
		if !seen {
			c.partialSince[name] = now
			continue
		}
		if limit := gangTimeoutSeconds*time.Second + partialSlack; now.Sub(since) > limit {
			c.violation("gang %s partly bound (%d of %d bound, %d pending) for %s, past its %ds timeout",
				name, g.bound, g.pg.Spec.MinMember, g.pending, now.Sub(since).Round(time.Second), gangTimeoutSeconds)
			delete(c.partialSince, name) // reported once
		}
	}
}

// checkEvictions reads the scheduler's Preempted events that are new and
// checks each preemption: the preemptor may preempt (its policy is not
// Never), no budget lost more pods than it allowed when the step began, and
// no victim-free placement existed: the preemptor's members that were not
// placed when the step began do not fit, first fit by size, into the GPUs
// no pod held at any time in the step (the preemptor's own pods aside), on
// nodes schedulable both when it began and now and that no other pod was
// nominated to in the step. A conservative test: a fit it finds is a
// placement that needed no victims; a search could find more.
func (c *checker) checkEvictions(st clusterState) {
	events, err := env.Client.CoreV1().Events(c.w.ns).List(c.w.ctx, metav1.ListOptions{FieldSelector: "reason=Preempted"})
	if err != nil {
		c.w.t.Fatalf("listing events: %v", err)
	}
	byPreemptor := map[string][]string{}
	for _, e := range events.Items {
		if c.seenEvents.Has(e.UID) || e.Source.Component != "tessera-scheduler" {
			continue
		}
		c.seenEvents.Insert(e.UID)
		_, after, ok := strings.Cut(e.Message, "to make room for ")
		if !ok {
			continue
		}
		preemptor, _, _ := strings.Cut(after, " (")
		byPreemptor[preemptor] = append(byPreemptor[preemptor], e.InvolvedObject.Name)
		c.summary.evictions++
	}
	pods := map[string]*corev1.Pod{}
	for i := range st.pods {
		pods[st.pods[i].Name] = &st.pods[i]
	}
	for preemptor, victims := range byPreemptor {
		own := c.preemptorPods(preemptor, st)
		for _, p := range own {
			if p.Spec.PreemptionPolicy != nil && *p.Spec.PreemptionPolicy == corev1.PreemptNever {
				c.violation("%s preempted %v although its preemptionPolicy is Never", preemptor, victims)
				break
			}
		}
		if waiting := c.unplacedBefore(own); len(waiting) > 0 {
			ownNames := sets.New[string]()
			for _, p := range own {
				ownNames.Insert(p.Name)
			}
			notOwn := func(p *corev1.Pod) bool { return ownNames.Has(p.Name) }
			held := c.heldDuringStep()
			free := leastOf(roomOf(clusterState{pods: held, nodes: c.before.nodes, topologies: c.before.topologies}, notOwn),
				roomOf(clusterState{pods: held, nodes: st.nodes, topologies: st.topologies}, notOwn))
			c.dropNominatedNodes(free, ownNames)
			if fits, on := fitsWithoutVictims(waiting, free); fits {
				const needless = "%s preempted %v although its %d unplaced members fit the GPUs free throughout the step (on %v)"
				if *strictEvictions {
					c.violation(needless, preemptor, victims, len(waiting), on)
				} else {
					c.summary.suspects++
					c.w.t.Logf("suspect eviction, seed %d step %d: "+needless, c.w.seed, c.step, preemptor, victims, len(waiting), on)
				}
			}
		}
		perBudget := map[string]int32{}
		for _, v := range victims {
			if app := c.victimApp(v, pods); app != "" {
				perBudget[app]++
			}
		}
		for app, n := range perBudget {
			if n > c.budgetsBefore[app] {
				c.violation("%s preempted %d pods under budget %s, which allowed %d", preemptor, n, app, c.budgetsBefore[app])
			}
		}
	}
}

// victimApp is the budget label of a victim, from the checker's own
// record of what it created (the victim may be gone by now).
func (c *checker) victimApp(name string, pods map[string]*corev1.Pod) string {
	if p, ok := pods[name]; ok {
		return p.Labels["app"]
	}
	return c.w.apps[name]
}

// preemptorPods are the pods a preemptor key (namespace/gang, or
// namespace/pod:name) names that still exist.
func (c *checker) preemptorPods(key string, st clusterState) []*corev1.Pod {
	_, name, _ := strings.Cut(key, "/")
	lone, isLone := strings.CutPrefix(name, "pod:")
	var out []*corev1.Pod
	for i := range st.pods {
		p := &st.pods[i]
		if isLone && p.Name == lone || !isLone && p.Labels[schedv1alpha1.PodGroupLabel] == name {
			out = append(out, p)
		}
	}
	return out
}

// dropNominatedNodes removes from free the nodes another pod than the
// preemptor's was nominated to during the step. A nominee's room is a
// number of GPUs on its node, not particular ones: the scheduler holds it
// from the free GPUs (a gang's plan regardless of priority), and which GPUs
// the nominee binds to can depend on the very eviction checked. Counting
// only the GPUs pods were seen holding took room held for a nominee for
// free room (seed 18 of a soak, 2026-12-03: a share evicted a pod for the
// GPU a gang member nominated to that node would otherwise have taken).
func (c *checker) dropNominatedNodes(free map[string]*room, own sets.Set[string]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for node, nominees := range c.nominatedDuring {
		if nominees.Difference(own).Len() > 0 {
			delete(free, node)
		}
	}
}

// heldDuringStep are the pods that held a node at some time in the step.
func (c *checker) heldDuringStep() []corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]corev1.Pod, 0, len(c.heldDuring))
	for _, p := range c.heldDuring {
		out = append(out, p)
	}
	return out
}

// unplacedBefore is what those of pods that held no node when the step
// began ask for.
func (c *checker) unplacedBefore(pods []*corev1.Pod) []member {
	placed := sets.New[string]()
	for i := range c.before.pods {
		if holdsNode(&c.before.pods[i]) {
			placed.Insert(c.before.pods[i].Name)
		}
	}
	var out []member
	for _, p := range pods {
		if !placed.Has(p.Name) {
			out = append(out, memberOf(p))
		}
	}
	return out
}
