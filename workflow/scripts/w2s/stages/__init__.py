"""One plain function per DAG stage (read inputs, compute, write outputs atomically), by layer."""
