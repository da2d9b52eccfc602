// Package app is k2's monolithic App resource (apps.k2.dev/v1): its Go
// types, the CustomResourceDefinition that k2 server installs, the rendering
// of an App into the children it owns (a Deployment or StatefulSet, a
// Service, and where asked an Ingress, a HorizontalPodAutoscaler, a
// PodDisruptionBudget and env ConfigMap/Secret), and the controller that
// keeps those children in line with the App.
//
// App is namespaced: the CRD is installed once, cluster-wide, and each App
// lives in the namespace of the children it owns (owner references cannot
// cross namespaces, and users expect `kubectl -n shop get apps`).
package app

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The App API: group k2.dev, one stable version, never alpha or beta.
const (
	Group    = "k2.dev"
	Version  = "v1"
	Kind     = "App"
	Resource = "apps"
	// FieldManager is the server-side apply field manager of the controller.
	FieldManager = "k2-app"
)

// GroupVersion, GVK and GVR name the App API for clients.
var (
	GroupVersion = schema.GroupVersion{Group: Group, Version: Version}
	GVK          = GroupVersion.WithKind(Kind)
	GVR          = GroupVersion.WithResource(Resource)
)

// App is one application: an image, the ports it listens on, how many
// copies, its environment, optionally a volume and a public host.
type App struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              Spec   `json:"spec"`
	Status            Status `json:"status,omitempty"`
}

// Spec is what the user asks for. Only image is required.
type Spec struct {
	Image      string      `json:"image"`
	Ports      []Port      `json:"ports,omitempty"`
	Replicas   *int32      `json:"replicas,omitempty"`
	Autoscale  *Autoscale  `json:"autoscale,omitempty"`
	Env        []EnvVar    `json:"env,omitempty"`
	Command    []string    `json:"command,omitempty"`
	Args       []string    `json:"args,omitempty"`
	Resources  *Resources  `json:"resources,omitempty"`
	Health     *Health     `json:"health,omitempty"`
	Volume     *Volume     `json:"volume,omitempty"`
	Expose     *Expose     `json:"expose,omitempty"`
	Disruption *Disruption `json:"disruption,omitempty"`
}

// Port is a port the container listens on, written 80, "80", "8080/tcp" or
// "53/udp" (an int-or-string, so K8sfile APP port=80 maps onto it as is).
type Port struct {
	intstr.IntOrString
}

// Parse returns the port number and protocol (TCP, UDP or SCTP; default TCP).
func (p Port) Parse() (int32, string, error) {
	if p.Type == intstr.Int {
		if p.IntVal < 1 || p.IntVal > 65535 {
			return 0, "", fmt.Errorf("port %d out of range 1-65535", p.IntVal)
		}
		return p.IntVal, "TCP", nil
	}
	num, proto, _ := strings.Cut(p.StrVal, "/")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 1 || n > 65535 {
		return 0, "", fmt.Errorf("port %q: want a number 1-65535, optionally /tcp, /udp or /sctp", p.StrVal)
	}
	switch strings.ToUpper(strings.TrimSpace(proto)) {
	case "", "TCP":
		return int32(n), "TCP", nil
	case "UDP":
		return int32(n), "UDP", nil
	case "SCTP":
		return int32(n), "SCTP", nil
	}
	return 0, "", fmt.Errorf("port %q: unknown protocol %q; use tcp, udp or sctp", p.StrVal, proto)
}

// MarshalJSON and UnmarshalJSON keep the int-or-string wire form.
func (p Port) MarshalJSON() ([]byte, error) { return p.IntOrString.MarshalJSON() }

// UnmarshalJSON accepts 80 and "80/udp".
func (p *Port) UnmarshalJSON(b []byte) error { return p.IntOrString.UnmarshalJSON(b) }

// IntPort returns the Port for a number.
func IntPort(n int32) Port { return Port{intstr.FromInt32(n)} }

// Autoscale replaces replicas with a HorizontalPodAutoscaler.
type Autoscale struct {
	Min int32 `json:"min"`
	Max int32 `json:"max"`
	// CPU is the target average CPU utilisation in percent of the request; default 80.
	CPU int32 `json:"cpu,omitempty"`
}

// EnvVar is one environment variable. Values go into a ConfigMap the App
// owns, or a Secret when Secret is true; the pod reads both through envFrom.
type EnvVar struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Secret bool   `json:"secret,omitempty"`
}

// Resources are the container's requests (and memory limit).
type Resources struct {
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
}

// Health overrides the default probes (a TCP check of the first port).
type Health struct {
	// Path makes the probes HTTP GETs of this path on the first port.
	Path string `json:"path,omitempty"`
	// Port overrides the probed port.
	Port int32 `json:"port,omitempty"`
	// Disabled turns the probes off.
	Disabled bool `json:"disabled,omitempty"`
}

// Volume gives each replica a persistent volume; the App then runs as a
// StatefulSet.
type Volume struct {
	Path             string `json:"path"`
	Size             string `json:"size,omitempty"` // default 1Gi
	StorageClassName string `json:"storageClassName,omitempty"`
}

// Expose publishes the App through an Ingress.
type Expose struct {
	Host             string `json:"host"`
	Path             string `json:"path,omitempty"` // default /
	Port             int32  `json:"port,omitempty"` // default: the first port
	IngressClassName string `json:"ingressClassName,omitempty"`
	TLSSecretName    string `json:"tlsSecretName,omitempty"`
}

// Disruption asks for a PodDisruptionBudget.
type Disruption struct {
	MinAvailable   *intstr.IntOrString `json:"minAvailable,omitempty"`
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// Status rolls the children up.
type Status struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	DesiredReplicas    int32              `json:"desiredReplicas"`
	ReadyReplicas      int32              `json:"readyReplicas"`
	// Replicas is "ready/desired", for the printer column.
	Replicas string `json:"replicas,omitempty"`
	URL      string `json:"url,omitempty"`
	// Workload is the kind and name of the Deployment or StatefulSet.
	Workload  string     `json:"workload,omitempty"`
	LastError *LastError `json:"lastError,omitempty"`
}

// LastError is the most recent error and the child object that caused it.
type LastError struct {
	Object  string      `json:"object"` // Kind/name
	Message string      `json:"message"`
	Time    metav1.Time `json:"time"`
}

// ConditionReady is the App's roll-up condition.
const ConditionReady = "Ready"

// FromUnstructured converts an object read through the dynamic client.
func FromUnstructured(u map[string]any) (*App, error) {
	a := &App{}
	b, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, a); err != nil {
		return nil, fmt.Errorf("decoding App: %w", err)
	}
	return a, nil
}

// ToUnstructured converts a for the dynamic client.
func ToUnstructured(a *App) (map[string]any, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}
