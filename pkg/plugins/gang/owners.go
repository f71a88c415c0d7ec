package gang

import (
	"context"
	"fmt"
	"time"

	kubeflowv1 "github.com/kubeflow/training-operator/pkg/apis/kubeflow.org/v1"
	toclient "github.com/kubeflow/training-operator/pkg/client/clientset/versioned"
	toinformers "github.com/kubeflow/training-operator/pkg/client/informers/externalversions"
	tolisters "github.com/kubeflow/training-operator/pkg/client/listers/kubeflow.org/v1"
	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	jobsetv1alpha2 "sigs.k8s.io/jobset/api/jobset/v1alpha2"
	jobsetclient "sigs.k8s.io/jobset/client-go/clientset/versioned"
	jobsetinformers "sigs.k8s.io/jobset/client-go/informers/externalversions"
	jobsetlisters "sigs.k8s.io/jobset/client-go/listers/jobset/v1alpha2"
	lwsv1 "sigs.k8s.io/lws/api/leaderworkerset/v1"
	lwsclient "sigs.k8s.io/lws/client-go/clientset/versioned"
	lwsinformers "sigs.k8s.io/lws/client-go/informers/externalversions"
	lwslisters "sigs.k8s.io/lws/client-go/listers/leaderworkerset/v1"

	"tessera.dev/tessera/pkg/ganginfer"
)

// ownerSyncTimeout bounds the first list of the framework owners:
// one that never syncs (its list forbidden) fails start-up with why.
const ownerSyncTimeout = 2 * time.Minute

// cachedOwners reads pods' owners from informers; a nil lister is an API
// the cluster did not serve when the scheduler started.
type cachedOwners struct {
	jobs        batchlisters.JobLister
	jobSets     jobsetlisters.JobSetLister
	lwss        lwslisters.LeaderWorkerSetLister
	pyTorchJobs tolisters.PyTorchJobLister
}

func (o cachedOwners) Job(namespace, name string) (*batchv1.Job, error) {
	return o.jobs.Jobs(namespace).Get(name)
}

func (o cachedOwners) JobSet(namespace, name string) (*jobsetv1alpha2.JobSet, error) {
	if o.jobSets == nil {
		return nil, ganginfer.ErrNotServed
	}
	return o.jobSets.JobSets(namespace).Get(name)
}

func (o cachedOwners) LeaderWorkerSet(namespace, name string) (*lwsv1.LeaderWorkerSet, error) {
	if o.lwss == nil {
		return nil, ganginfer.ErrNotServed
	}
	return o.lwss.LeaderWorkerSets(namespace).Get(name)
}

func (o cachedOwners) PyTorchJob(namespace, name string) (*kubeflowv1.PyTorchJob, error) {
	if o.pyTorchJobs == nil {
		return nil, ganginfer.ErrNotServed
	}
	return o.pyTorchJobs.PyTorchJobs(namespace).Get(name)
}

// liveOwners reads them from the API; a nil client is an API not served.
type liveOwners struct {
	ctx         context.Context
	core        kubernetes.Interface
	jobSets     jobsetclient.Interface
	lwss        lwsclient.Interface
	pyTorchJobs toclient.Interface
}

func (o liveOwners) Job(namespace, name string) (*batchv1.Job, error) {
	return o.core.BatchV1().Jobs(namespace).Get(o.ctx, name, metav1.GetOptions{})
}

func (o liveOwners) JobSet(namespace, name string) (*jobsetv1alpha2.JobSet, error) {
	if o.jobSets == nil {
		return nil, ganginfer.ErrNotServed
	}
	return o.jobSets.JobsetV1alpha2().JobSets(namespace).Get(o.ctx, name, metav1.GetOptions{})
}

func (o liveOwners) LeaderWorkerSet(namespace, name string) (*lwsv1.LeaderWorkerSet, error) {
	if o.lwss == nil {
		return nil, ganginfer.ErrNotServed
	}
	return o.lwss.LeaderworkersetV1().LeaderWorkerSets(namespace).Get(o.ctx, name, metav1.GetOptions{})
}

func (o liveOwners) PyTorchJob(namespace, name string) (*kubeflowv1.PyTorchJob, error) {
	if o.pyTorchJobs == nil {
		return nil, ganginfer.ErrNotServed
	}
	return o.pyTorchJobs.KubeflowV1().PyTorchJobs(namespace).Get(o.ctx, name, metav1.GetOptions{})
}

// served reports whether the apiserver serves resource in gv.
func served(d discovery.DiscoveryInterface, gv schema.GroupVersion, resource string) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(gv.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", gv, err)
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true, nil
		}
	}
	return false, nil
}

// connectOwners builds the inference's readers: the scheduler's Job
// informer, and informers of their own for the framework APIs the cluster
// serves now. An API installed later is seen after a restart: watching one
// that is not served would keep the scheduler from starting.
func (s *Shared) connectOwners(ctx context.Context, jobs batchlisters.JobLister, core kubernetes.Interface, crdConfig *rest.Config) (cachedOwners, liveOwners, error) {
	logger := klog.FromContext(ctx)
	cached := cachedOwners{jobs: jobs}
	live := liveOwners{ctx: ctx, core: core}
	apis := []struct {
		gv       schema.GroupVersion
		resource string
		served   *bool
		// connect starts the API's informer and wires its readers.
		connect func() (cache.InformerSynced, error)
	}{
		{jobsetv1alpha2.SchemeGroupVersion, "jobsets", &s.jobSetsServed, func() (cache.InformerSynced, error) {
			client, err := jobsetclient.NewForConfig(crdConfig)
			if err != nil {
				return nil, err
			}
			factory := jobsetinformers.NewSharedInformerFactory(client, 0)
			informer := factory.Jobset().V1alpha2().JobSets()
			cached.jobSets, live.jobSets = informer.Lister(), client
			factory.Start(ctx.Done())
			return informer.Informer().HasSynced, nil
		}},
		{lwsv1.SchemeGroupVersion, "leaderworkersets", &s.lwsServed, func() (cache.InformerSynced, error) {
			client, err := lwsclient.NewForConfig(crdConfig)
			if err != nil {
				return nil, err
			}
			factory := lwsinformers.NewSharedInformerFactory(client, 0)
			informer := factory.Leaderworkerset().V1().LeaderWorkerSets()
			cached.lwss, live.lwss = informer.Lister(), client
			factory.Start(ctx.Done())
			return informer.Informer().HasSynced, nil
		}},
		{kubeflowv1.SchemeGroupVersion, "pytorchjobs", &s.pyTorchJobsServed, func() (cache.InformerSynced, error) {
			client, err := toclient.NewForConfig(crdConfig)
			if err != nil {
				return nil, err
			}
			factory := toinformers.NewSharedInformerFactory(client, 0)
			informer := factory.Kubeflow().V1().PyTorchJobs()
			cached.pyTorchJobs, live.pyTorchJobs = informer.Lister(), client
			factory.Start(ctx.Done())
			return informer.Informer().HasSynced, nil
		}},
	}
	var synced []cache.InformerSynced
	for _, api := range apis {
		ok, err := served(core.Discovery(), api.gv, api.resource)
		if err != nil {
			return cached, live, err
		}
		if !ok {
			continue
		}
		hasSynced, err := api.connect()
		if err != nil {
			return cached, live, err
		}
		synced = append(synced, hasSynced)
		*api.served = true
	}
	logger.Info("Gang inference from owners", "Job", true, "JobSet", s.jobSetsServed, "LeaderWorkerSet", s.lwsServed, "PyTorchJob", s.pyTorchJobsServed)
	syncCtx, cancel := context.WithTimeout(ctx, ownerSyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), synced...) {
		return cached, live, fmt.Errorf("plugin %s: the JobSet, LeaderWorkerSet and PyTorchJob informers did not sync in %s: does the scheduler's ClusterRole allow list and watch on jobsets.jobset.x-k8s.io, leaderworkersets.leaderworkerset.x-k8s.io and pytorchjobs.kubeflow.org (manifests/scheduler/deployment.yaml)?", Name, ownerSyncTimeout)
	}
	return cached, live, nil
}
