"""Template generators for the demo datasets, one module per dataset; see scripts/make_demo_data.py."""
