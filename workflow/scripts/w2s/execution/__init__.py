"""Running a stage as a job: logs, GPU leases, and data-parallel launches."""
