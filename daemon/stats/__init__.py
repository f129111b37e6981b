"""Statistics over the stored records: KPIs, reports, staffing."""
