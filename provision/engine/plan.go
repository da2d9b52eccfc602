package engine

// Plan is the resolved plan of a deployment.
type Plan struct{}
