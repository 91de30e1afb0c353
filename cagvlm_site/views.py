"""Site-wide views: home, health, media. (Placeholder: filled in by the pages work.)"""
