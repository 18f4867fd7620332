"""The library: data, models, training, evaluation, registry, storage and reports — pure cores and IO edges, no Prefect."""
