//go:build !linux

package sandbox

func restrictBind(ports []uint16) (Result, error) {
	return Result{Ports: ports}, ErrUnsupported
}

// Supported says whether this kernel can enforce RestrictBind.
func Supported() bool { return false }
