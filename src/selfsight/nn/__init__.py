"""Plain PyTorch building blocks shared by methods: heads, EMA, gathering, schedules."""
