// Package nodeagent is the node agent's control loop: it reads the node's
// GPUs through NVML (pkg/topology), keeps sticky GPU faults, publishes the
// node's GPUNodeTopology on change or on a slow heartbeat, keeps a Node
// condition and events about GPU faults, and serves GPU metrics.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	tesserav1alpha1 "tessera.dev/tessera/apis/tessera/v1alpha1"
	"tessera.dev/tessera/pkg/dra"
	"tessera.dev/tessera/pkg/topology"
)

// Source is what the agent reads GPUs from: NVML, real or fake.
type Source interface {
	topology.Source
	DriverVersion() (string, error)
}

// Config wires an Agent.
type Config struct {
	NodeName string
	Source   Source
	// Client writes GPUNodeTopology and Node status; its reads may come from
	// a cache that watches only this node's objects.
	Client   ctrlclient.Client
	Recorder record.EventRecorder
	// Registry receives the GPU metrics; nil skips them.
	Registry prometheus.Registerer
	// Interval is how often NVML is read. Reads are local and cheap; writes
	// happen only on change or heartbeat. Default 10s.
	Interval time.Duration
	// Heartbeat is the longest time between two writes of an unchanged
	// status. Default 5m: 1,000 nodes then write about 3.3 times a second.
	Heartbeat time.Duration
	Clock     clock.WithTicker
	// PodResources, if set, attributes GPUs to containers and reports
	// containers holding GPUs other than the scheduler assigned.
	PodResources PodResourcesLister
	// XIDRetryMax caps the backoff between attempts to watch XID events
	// again after watching failed. Default 5m.
	XIDRetryMax time.Duration
	// Slices, if set, is given the node's GPUs as DRA devices of driver
	// gpu.tessera.dev after every read (dra.Publisher writes them as the
	// node's ResourceSlice); PCIeRoot finds each GPU's PCIe root for them.
	Slices   DevicePublisher
	PCIeRoot dra.PCIeRootOf
}

// DevicePublisher publishes the node's DRA devices (dra.Publisher).
type DevicePublisher interface {
	Publish(devices []resourceapi.Device)
}

// Agent is the node agent's control loop.
type Agent struct {
	cfg     Config
	faults  *faultTracker
	roster  *roster
	metrics *collector
	// restored is set once the published status has been read back at
	// start-up (faults and known GPUs restored from it).
	restored bool
	xidWatch xidWatchState
	// trigger asks for a sync before the next tick (after an XID).
	trigger chan struct{}

	published *tesserav1alpha1.GPUNodeTopologyStatus
	// latest is the status of the last read, written or not.
	latest    atomic.Pointer[tesserav1alpha1.GPUNodeTopologyStatus]
	lastWrite time.Time
	lastSync  atomic.Pointer[time.Time]
	// reported remembers each pod's last reported assignment problem, so that
	// a lasting drift is reported once, not on every sync.
	reported map[types.UID]podProblem
	// unknownIDs are the container device IDs this node does not report,
	// already logged: each is logged once while it lasts.
	unknownIDs map[string]bool
}

// New checks cfg, fills defaults and registers the agent's metrics.
func New(cfg Config) (*Agent, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("node name is empty: set --node-name or NODE_NAME from the downward API")
	}
	if cfg.Source == nil || cfg.Client == nil || cfg.Recorder == nil {
		return nil, errors.New("source, client and event recorder are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.XIDRetryMax <= 0 {
		cfg.XIDRetryMax = 5 * time.Minute
	}
	a := &Agent{cfg: cfg, faults: newFaultTracker(), roster: newRoster(), metrics: newCollector(cfg.NodeName), trigger: make(chan struct{}, 1), reported: map[types.UID]podProblem{}}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(a.metrics); err != nil {
			return nil, fmt.Errorf("registering GPU metrics: %w", err)
		}
	}
	return a, nil
}

// Run syncs every Interval, and at once after a critical XID, until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	go a.watchXIDs(ctx)
	ticker := a.cfg.Clock.NewTicker(a.cfg.Interval)
	defer ticker.Stop()
	for {
		if err := a.Sync(ctx); err != nil {
			logger.Error(err, "GPU topology sync failed; retrying at the next interval")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		case <-a.trigger:
		}
	}
}

// Healthy reports an error unless a sync succeeded within three intervals.
func (a *Agent) Healthy() error {
	last := a.lastSync.Load()
	if last == nil {
		return errors.New("no successful sync yet")
	}
	if age := a.cfg.Clock.Since(*last); age > 3*a.cfg.Interval {
		return fmt.Errorf("last successful sync %s ago", age.Round(time.Second))
	}
	return nil
}

// Status is the node's GPUs as last read (nil before the first read), the
// model both the GPUNodeTopology and the DRA devices are built from.
func (a *Agent) Status() *tesserav1alpha1.GPUNodeTopologyStatus { return a.latest.Load() }

// Sync reads NVML once and publishes what changed.
func (a *Agent) Sync(ctx context.Context) error {
	d, err := topology.Discover(a.cfg.Source)
	if err != nil {
		return err
	}
	driver, _ := a.cfg.Source.DriverVersion()

	current := &tesserav1alpha1.GPUNodeTopology{}
	err = a.cfg.Client.Get(ctx, types.NamespacedName{Name: a.cfg.NodeName}, current)
	switch {
	case apierrors.IsNotFound(err):
		current = nil
	case err != nil:
		return fmt.Errorf("reading GPUNodeTopology %s: %w", a.cfg.NodeName, err)
	}
	if current != nil && !a.restored {
		// Faults are sticky across restarts: take back what this node's
		// agent last published, and the GPUs it knew.
		a.faults.restore(current.Status.Devices)
		a.roster.restore(current.Status.Devices)
	}
	a.restored = true
	if current != nil {
		if err := a.applyClearAnnotation(ctx, current); err != nil {
			return err
		}
	}
	count, err := a.cfg.Source.DeviceCount()
	if err != nil {
		return fmt.Errorf("counting GPUs: %w", err)
	}
	var lost map[string]bool
	var unreadable []int
	d.Topology, lost, unreadable = a.roster.complete(d.Topology, count)

	raised, cleared := a.faults.observe(d.Topology, lost)
	for _, g := range raised {
		a.nodeEvent(corev1.EventTypeWarning, "GPUFault", "GPU %d (%s) is unhealthy: %s", g.Index, g.UUID, g.UnhealthyReason)
	}
	for _, g := range cleared {
		a.nodeEvent(corev1.EventTypeNormal, "GPURecovered", "GPU %d (%s): NVML no longer reports a fault", g.Index, g.UUID)
	}

	status := BuildStatus(d, driver)
	for i := range status.Devices {
		if dev := &status.Devices[i]; !dev.Healthy {
			dev.FaultKind = a.faults.kind(dev.UUID)
		}
	}
	// A copy: publish decodes the server's answer into status's slices.
	a.latest.Store(status.DeepCopy())
	if a.cfg.Slices != nil {
		// The same model as the GPUNodeTopology, so that the two never
		// disagree on a GPU's health.
		a.cfg.Slices.Publish(dra.Devices(&status, a.cfg.PCIeRoot))
	}
	samples := make([]gpuSample, 0, len(d.Topology.GPUs))
	telemetry := make([]topology.Telemetry, 0, len(d.Topology.GPUs))
	for _, g := range d.Topology.GPUs {
		var t topology.Telemetry
		if !lost[g.UUID] {
			if t, err = a.cfg.Source.Telemetry(g.Index); err != nil {
				klog.FromContext(ctx).V(2).Info("Telemetry partly unreadable", "gpu", g.Index, "err", err)
			}
			telemetry = append(telemetry, t)
		}
		samples = append(samples, gpuSample{gpu: g, telemetry: t, uncorrectableECC: g.UncorrectableECC, nvlinks: g.ActiveNVLinks})
	}
	containers := a.attribute(ctx, d.Topology)
	a.metrics.set(samples, containers)
	status.Holders = holders(containers)

	now := a.cfg.Clock.Now()
	reason := ""
	switch {
	case current == nil || a.published == nil || !sameTopology(status, *a.published):
		reason = "change"
	case now.Sub(a.lastWrite) >= a.cfg.Heartbeat:
		reason = "heartbeat"
	}
	if reason != "" {
		status.Telemetry = summarize(telemetry)
		status.HeartbeatTime = &metav1.Time{Time: now}
		if err := a.publish(ctx, current, status); err != nil {
			return err
		}
		a.published, a.lastWrite = &status, now
		a.metrics.writes.WithLabelValues(reason).Inc()
	}
	if err := a.setNodeConditions(ctx, d.Topology, unreadable); err != nil {
		return err
	}
	a.lastSync.Store(&now)
	return nil
}

func (a *Agent) publish(ctx context.Context, current *tesserav1alpha1.GPUNodeTopology, status tesserav1alpha1.GPUNodeTopologyStatus) error {
	if current == nil {
		node := &corev1.Node{}
		if err := a.cfg.Client.Get(ctx, types.NamespacedName{Name: a.cfg.NodeName}, node); err != nil {
			return fmt.Errorf("reading node %s: %w", a.cfg.NodeName, err)
		}
		current = &tesserav1alpha1.GPUNodeTopology{ObjectMeta: metav1.ObjectMeta{
			Name: a.cfg.NodeName,
			// Deleted with its node.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
			}},
		}}
		err := a.cfg.Client.Create(ctx, current)
		if apierrors.IsAlreadyExists(err) {
			err = a.cfg.Client.Get(ctx, types.NamespacedName{Name: a.cfg.NodeName}, current)
		}
		if err != nil {
			return fmt.Errorf("creating GPUNodeTopology %s: %w", a.cfg.NodeName, err)
		}
	}
	obj := current.DeepCopy()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// A copy: the update decodes the server's answer into obj, and
		// status is what this agent keeps as published.
		obj.Status = *status.DeepCopy()
		err := a.cfg.Client.Status().Update(ctx, obj)
		if apierrors.IsConflict(err) {
			if getErr := a.cfg.Client.Get(ctx, types.NamespacedName{Name: a.cfg.NodeName}, obj); getErr != nil {
				return getErr
			}
		}
		return err
	})
}

// applyClearAnnotation lifts the faults an admin asked to clear and removes
// the annotation, so that a later fault is not cleared by a stale request.
func (a *Agent) applyClearAnnotation(ctx context.Context, obj *tesserav1alpha1.GPUNodeTopology) error {
	value, ok := obj.Annotations[tesserav1alpha1.AnnotationClearFaults]
	if !ok {
		return nil
	}
	uuids := parseClearAnnotation(value)
	a.roster.forget(uuids)
	for _, uuid := range a.faults.clear(uuids) {
		a.nodeEvent(corev1.EventTypeNormal, "GPUFaultCleared", "fault of GPU %s cleared by %s", uuid, tesserav1alpha1.AnnotationClearFaults)
	}
	patch := ctrlclient.MergeFrom(obj.DeepCopy())
	delete(obj.Annotations, tesserav1alpha1.AnnotationClearFaults)
	if err := a.cfg.Client.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("removing %s: %w", tesserav1alpha1.AnnotationClearFaults, err)
	}
	return nil
}

// setNodeConditions keeps the Node's TesseraGPUHealthy and
// TesseraGPUXIDWatch conditions, writing only when a status or message
// changes.
func (a *Agent) setNodeConditions(ctx context.Context, t *topology.Topology, unreadable []int) error {
	total := len(t.GPUs) + len(unreadable)
	health := corev1.NodeCondition{
		Type:    tesserav1alpha1.NodeConditionGPUHealthy,
		Status:  corev1.ConditionTrue,
		Reason:  "AllGPUsHealthy",
		Message: fmt.Sprintf("all %d GPUs healthy", total),
	}
	var faults []string
	for _, g := range t.GPUs {
		if !g.Healthy {
			faults = append(faults, fmt.Sprintf("GPU %d (%s): %s", g.Index, g.UUID, g.UnhealthyReason))
		}
	}
	faults = append(faults, unreadableFaults(unreadable)...)
	if len(faults) > 0 {
		health.Status, health.Reason = corev1.ConditionFalse, "GPUFault"
		health.Message = fmt.Sprintf("%d of %d GPUs unhealthy: %s", len(faults), total, strings.Join(faults, "; "))
	}
	wants := []corev1.NodeCondition{health}
	if xid, ok := a.xidWatch.condition(a.cfg.XIDRetryMax); ok {
		wants = append(wants, xid)
	}

	node := &corev1.Node{}
	if err := a.cfg.Client.Get(ctx, types.NamespacedName{Name: a.cfg.NodeName}, node); err != nil {
		return fmt.Errorf("reading node %s: %w", a.cfg.NodeName, err)
	}
	patch := ctrlclient.StrategicMergeFrom(node.DeepCopy())
	now := metav1.NewTime(a.cfg.Clock.Now())
	changed := false
	for _, want := range wants {
		i := slices.IndexFunc(node.Status.Conditions, func(c corev1.NodeCondition) bool { return c.Type == want.Type })
		if i >= 0 && node.Status.Conditions[i].Status == want.Status && node.Status.Conditions[i].Message == want.Message {
			continue
		}
		changed = true
		want.LastHeartbeatTime, want.LastTransitionTime = now, now
		if i < 0 {
			node.Status.Conditions = append(node.Status.Conditions, want)
			continue
		}
		if node.Status.Conditions[i].Status == want.Status {
			want.LastTransitionTime = node.Status.Conditions[i].LastTransitionTime
		}
		node.Status.Conditions[i] = want
	}
	if !changed {
		return nil
	}
	if err := a.cfg.Client.Status().Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("setting node conditions: %w", err)
	}
	return nil
}

func (a *Agent) nodeEvent(eventType, reason, format string, args ...any) {
	ref := &corev1.ObjectReference{Kind: "Node", Name: a.cfg.NodeName, UID: types.UID(a.cfg.NodeName)}
	a.cfg.Recorder.Eventf(ref, eventType, reason, format, args...)
}
