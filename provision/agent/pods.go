package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
)

// podWorkers is how many pods are synced at once.
const podWorkers = 4

// runPods watches the pods bound to this node and syncs each change.
func (a *agent) runPods(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(a.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "spec.nodeName=" + a.o.NodeName
	}))
	inf := f.Core().V1().Pods().Informer()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer q.ShutDown()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			q.Add(key)
		}
	}
	uids := &sync.Map{} // key → UID of pods the runtime runs
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	var wg sync.WaitGroup
	for range podWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, quit := q.Get()
				if quit {
					return
				}
				recheck, err := a.syncPod(ctx, inf.GetIndexer(), uids, key)
				switch {
				case err == nil:
					q.Forget(key)
					if recheck > 0 {
						q.AddAfter(key, recheck)
					}
				case ctx.Err() == nil:
					level := slog.LevelWarn
					if apierrors.IsConflict(err) {
						level = slog.LevelDebug // a newer version is queued already
					}
					a.log.Log(ctx, level, "syncing pod; retrying", "pod", key, "err", err)
					q.AddRateLimited(key)
				}
				q.Done(key)
			}
		}()
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
	return nil
}

// syncPod brings one pod's runtime state and API status in line; a
// positive duration asks for another sync after it.
func (a *agent) syncPod(ctx context.Context, idx cache.Indexer, uids *sync.Map, key string) (time.Duration, error) {
	obj, exists, err := idx.GetByKey(key)
	if err != nil {
		return 0, err
	}
	if !exists {
		if uid, ok := uids.LoadAndDelete(key); ok {
			return 0, a.rt.StopPod(ctx, uid.(types.UID))
		}
		return 0, nil
	}
	pod := obj.(*corev1.Pod)
	if old, ok := uids.Load(key); ok && old.(types.UID) != pod.UID {
		// Same name, new pod (a StatefulSet replica): stop the old one.
		if err := a.rt.StopPod(ctx, old.(types.UID)); err != nil {
			return 0, err
		}
		uids.Delete(key)
	}
	if pod.DeletionTimestamp != nil {
		return 0, a.finalise(ctx, uids, key, pod)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		// Finished: free what the runtime holds; the pod object stays.
		if uid, ok := uids.LoadAndDelete(key); ok {
			return 0, a.rt.StopPod(ctx, uid.(types.UID))
		}
		return 0, nil
	}
	if pod.Status.Phase == "" || pod.Status.StartTime == nil {
		// Pending first, as a kubelet reports while it pulls and starts.
		st := PendingStatus(pod, hostIP(), metav1.Now())
		updated, err := a.writeStatus(ctx, pod, st)
		if err != nil {
			return 0, err
		}
		pod = updated
	}
	rs, err := a.rt.RunPod(ctx, pod)
	if err != nil {
		return 0, fmt.Errorf("running pod: %w", err)
	}
	uids.Store(key, pod.UID)
	st := RunningStatus(pod, rs, hostIP(), metav1.Now())
	if statusEqual(pod.Status, st) {
		return rs.Recheck, nil
	}
	_, err = a.writeStatus(ctx, pod, st)
	return rs.Recheck, err
}

// finalise stops a pod being deleted and removes it from the API, as a
// kubelet does once its containers are gone.
func (a *agent) finalise(ctx context.Context, uids *sync.Map, key string, pod *corev1.Pod) error {
	if err := a.rt.StopPod(ctx, pod.UID); err != nil {
		return err
	}
	uids.Delete(key)
	err := a.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To(int64(0)),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func (a *agent) writeStatus(ctx context.Context, pod *corev1.Pod, st corev1.PodStatus) (*corev1.Pod, error) {
	p := pod.DeepCopy()
	p.Status = st
	out, err := a.cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating pod status: %w", err) // keeps IsConflict
	}
	return out, nil
}

// setCondition replaces or adds a condition, keeping its transition time
// when the status did not change.
func setCondition(conds []corev1.PodCondition, c corev1.PodCondition) []corev1.PodCondition {
	for i, old := range conds {
		if old.Type == c.Type {
			if old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
			conds[i] = c
			return conds
		}
	}
	return append(conds, c)
}

func cond(t corev1.PodConditionType, ok bool, reason string, now metav1.Time) corev1.PodCondition {
	s := corev1.ConditionFalse
	if ok {
		s = corev1.ConditionTrue
	}
	return corev1.PodCondition{Type: t, Status: s, Reason: reason, LastTransitionTime: now}
}

// PendingStatus is a pod's status while its containers are being created.
func PendingStatus(pod *corev1.Pod, hostIP string, now metav1.Time) corev1.PodStatus {
	st := *pod.Status.DeepCopy()
	st.Phase = corev1.PodPending
	st.HostIP, st.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	st.Conditions = setCondition(st.Conditions, cond(corev1.PodScheduled, true, "", now))
	st.Conditions = setCondition(st.Conditions, cond(corev1.PodInitialized, true, "", now))
	st.Conditions = setCondition(st.Conditions, cond(corev1.ContainersReady, false, "ContainersNotReady", now))
	st.Conditions = setCondition(st.Conditions, cond(corev1.PodReady, false, "ContainersNotReady", now))
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		})
	}
	return st
}

// RunningStatus is a pod's status once the runtime runs it.
func RunningStatus(pod *corev1.Pod, rs *PodStatus, hostIP string, now metav1.Time) corev1.PodStatus {
	st := *pod.Status.DeepCopy()
	st.Phase = corev1.PodRunning
	st.HostIP, st.HostIPs = hostIP, []corev1.HostIP{{IP: hostIP}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	switch {
	case pod.Spec.HostNetwork:
		st.PodIP, st.PodIPs = hostIP, []corev1.PodIP{{IP: hostIP}}
	case rs.IP != "":
		st.PodIP, st.PodIPs = rs.IP, []corev1.PodIP{{IP: rs.IP}}
	}
	allReady, allExited, failed := true, len(rs.Containers) > 0, false
	st.ContainerStatuses = nil
	for _, c := range rs.Containers {
		cs := corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.ImageID, ContainerID: c.ContainerID,
			Ready: c.Running, Started: ptr.To(c.Running), RestartCount: c.RestartCount,
		}
		switch {
		case c.Exited:
			reason := "Completed"
			if c.ExitCode != 0 {
				reason, failed = "Error", true
			}
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: c.ExitCode, Reason: reason, ContainerID: c.ContainerID,
				StartedAt:  metav1.NewTime(c.StartedAt.Truncate(time.Second)),
				FinishedAt: metav1.NewTime(c.FinishedAt.Truncate(time.Second)),
			}
			allReady = false
		case c.Running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt.Truncate(time.Second))}
			allExited = false
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
			allReady, allExited = false, false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", ExitCode: 0}},
		})
	}
	reason := ""
	if !allReady {
		reason = "ContainersNotReady"
	}
	if allExited {
		st.Phase, reason = corev1.PodSucceeded, "PodCompleted"
		if failed {
			st.Phase = corev1.PodFailed
		}
	}
	st.Conditions = setCondition(st.Conditions, cond(corev1.PodScheduled, true, "", now))
	st.Conditions = setCondition(st.Conditions, cond(corev1.PodInitialized, true, "", now))
	st.Conditions = setCondition(st.Conditions, cond(corev1.ContainersReady, allReady, reason, now))
	st.Conditions = setCondition(st.Conditions, cond(corev1.PodReady, allReady, reason, now))
	return st
}

// statusEqual compares what the agent writes, ignoring times.
func statusEqual(a, b corev1.PodStatus) bool {
	if a.Phase != b.Phase || a.PodIP != b.PodIP || a.HostIP != b.HostIP || len(a.Conditions) != len(b.Conditions) || len(a.ContainerStatuses) != len(b.ContainerStatuses) {
		return false
	}
	for i := range a.Conditions {
		if a.Conditions[i].Type != b.Conditions[i].Type || a.Conditions[i].Status != b.Conditions[i].Status {
			return false
		}
	}
	for i := range a.ContainerStatuses {
		x, y := a.ContainerStatuses[i], b.ContainerStatuses[i]
		if x.Name != y.Name || x.Ready != y.Ready || (x.State.Running == nil) != (y.State.Running == nil) || (x.State.Terminated == nil) != (y.State.Terminated == nil) {
			return false
		}
	}
	return true
}
