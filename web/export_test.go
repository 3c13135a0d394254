package web

// RoutePermissions returns the permission each API route declares, by
// pattern, for the tests that hold them to the OpenAPI description.
func RoutePermissions(s *Server) map[string]string {
	s.Handler()
	return s.permissions
}
