"""The NLP pipeline shared by the platform DAGs (dags/): its Params, Assets, steps and builder."""
