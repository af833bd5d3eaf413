"""The load generator's client side: the raw HTTP/1.1 wire, the closed and open loops, their
schedule, the multi-process driver, latency statistics and the Prometheus scrape."""
