package v1alpha1

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// decodeArgs reads a plugin's pluginConfig args strictly (unknown fields
// are errors), applies defaults and validates them; errors name the plugin
// and the field.
func decodeArgs[T any, PT interface {
	*T
	runtime.Object
}](plugin string, obj runtime.Object, setDefaults func(PT), validate func(*field.Path, PT) field.ErrorList) (PT, error) {
	args := PT(new(T))
	switch o := obj.(type) {
	case nil:
	case *runtime.Unknown:
		if len(o.Raw) > 0 {
			if err := yaml.UnmarshalStrict(o.Raw, args); err != nil {
				return nil, fmt.Errorf("decoding %s plugin args: %w", plugin, err)
			}
		}
	case PT:
		args = o.DeepCopyObject().(PT)
	default:
		return nil, fmt.Errorf("args of the %s plugin: want %T, got %T", plugin, args, obj)
	}
	setDefaults(args)
	if errs := validate(field.NewPath("args"), args); len(errs) > 0 {
		return nil, fmt.Errorf("invalid %s plugin args: %w", plugin, errs.ToAggregate())
	}
	return args, nil
}
