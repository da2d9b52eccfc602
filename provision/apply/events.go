package apply

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// events returns the last few events about r, and for workloads about the
// ReplicaSets and Pods named after them, newest last.
func events(ctx context.Context, cl *clients, r *ObjectResult) []string {
	if r.Object.Namespace == "" && r.uid == "" {
		return nil
	}
	list, err := cl.kube.CoreV1().Events(r.Object.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"(listing events: " + err.Error() + ")"}
	}
	var evs []corev1.Event
	for _, e := range list.Items {
		io := e.InvolvedObject
		mine := string(io.UID) == r.uid && r.uid != "" ||
			io.Kind == r.Object.Kind && io.Name == r.Object.Name ||
			(io.Kind == "ReplicaSet" || io.Kind == "Pod") && strings.HasPrefix(io.Name, r.Object.Name+"-")
		if mine {
			evs = append(evs, e)
		}
	}
	sort.Slice(evs, func(i, j int) bool { return eventTime(evs[i]).Before(eventTime(evs[j])) })
	if len(evs) > 5 {
		evs = evs[len(evs)-5:]
	}
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		s := fmt.Sprintf("%s %s %s/%s: %s", e.Type, e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, strings.TrimSpace(e.Message))
		if e.Count > 1 {
			s += fmt.Sprintf(" (x%d)", e.Count)
		}
		out = append(out, s)
	}
	return out
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}
