package app

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

//go:embed crd.yaml
var crdYAML []byte

// CRDYAML returns the App CustomResourceDefinition manifest.
func CRDYAML() []byte { return append([]byte(nil), crdYAML...) }

// CRD returns the App CustomResourceDefinition.
func CRD() (*apiextensionsv1.CustomResourceDefinition, error) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(crdYAML, crd); err != nil {
		return nil, fmt.Errorf("decoding the App CRD: %w", err)
	}
	return crd, nil
}

// InstallCRD creates or updates the App CRD with server-side apply (field
// manager k2-app) and waits until the API server serves it (Established).
// It is idempotent; k2 server calls it at every start.
func InstallCRD(ctx context.Context, cfg *rest.Config) error {
	crd, err := CRD()
	if err != nil {
		return err
	}
	cs, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("installing the App CRD: %w", err)
	}
	body, err := json.Marshal(crd)
	if err != nil {
		return err
	}
	force := true
	crds := cs.ApiextensionsV1().CustomResourceDefinitions()
	if _, err := crds.Patch(ctx, crd.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
		return fmt.Errorf("installing the App CRD: %w", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the App CRD to be established: %w", err)
	}
	return nil
}
