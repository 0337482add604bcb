// The status server's view of a running Service.
import Service

extension StatusSource {
    /// /metrics from the service's Prometheus registry; /readyz from its status (not ready while
    /// draining or with no model loaded).
    public init(service: Service) {
        self.init(metrics: { service.prometheusText() },
                  readiness: {
                      let s = service.status
                      if s.ready { return (true, "") }
                      return (false, s.draining ? "draining" : "no model loaded")
                  })
    }
}
