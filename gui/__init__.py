"""The Qt panel for live virtual volumes.

Not implemented yet (see the README's status table). Only this package imports qtpy.
"""
