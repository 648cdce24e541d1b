package resources

import "github.com/hactl/hactl/converge"

// Builtin returns a registry of every built-in kind.
func Builtin() *converge.Registry {
	return converge.NewRegistry(
		fileKind(),
		directoryKind(),
		symlinkKind(),
		templateKind(),
		packageKind(),
		serviceKind(),
		userKind(),
		groupKind(),
		execKind(),
		gitKind(),
	)
}
